"""``python -m orchestrator.cli``: the same as the ``orchestrate`` command."""

from orchestrator.cli import main

if __name__ == "__main__":
    main(prog_name="orchestrate")
