"""Test support: a child script's ``run`` function as a ``shelf-audit`` subcommand of the real console script.

``SCRIPT_BODY + as_subcommand("name")`` is Python source for ``python -c``: it
registers the script's ``run(args)`` as ``shelf-audit name`` and calls
``cli.console_main()`` (the quiet set-up, logging and the quick exit of the real
command), which parses ``sys.argv[1:]``.
"""

from __future__ import annotations

import textwrap


def as_subcommand(name: str) -> str:
    """Source that registers ``run`` (defined above it) as ``shelf-audit NAME`` and runs the console script."""
    return textwrap.dedent(
        f"""
        import sys, types
        from shelf_audit import cli

        module = types.ModuleType({name + "_cmd"!r})
        module.add_arguments = lambda parser: None
        module.run = run
        sys.modules[module.__name__] = module
        cli.COMMANDS[{name!r}] = (module.__name__, "test")
        cli.console_main()
        """
    )


# A child script: `models list`, `show` and `verify --no-run` on the bucket in argv[1], each exiting 0,
# without TensorFlow ever imported.
READERS_WITHOUT_TENSORFLOW = (
    "import sys\n"
    "from shelf_audit import cli\n"
    "for action in (['list'], ['show'], ['verify', '--no-run']):\n"
    "    assert cli.main(['models', *action, '--bucket', sys.argv[1]]) == 0, action\n"
    "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
)
