"""scale (todo)."""
NAME = "scale"

def run(bench):
    return {}, []
