"""The marker plugins put on their hook functions: ``@orchestra.hookimpl``.

(Not called hookimpl.py: a submodule of that name would shadow the attribute.)
"""

import pluggy

hookimpl = pluggy.HookimplMarker("orchestra")
