"""discovery (todo)."""
NAME = "discovery"

def run(bench):
    return {}, []
