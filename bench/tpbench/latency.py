"""latency (todo)."""
NAME = "latency"

def run(bench):
    return {}, []
