"""control (todo)."""
NAME = "control"

def run(bench):
    return {}, []
