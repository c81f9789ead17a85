"""One way to make HTML: Jinja2 environments with autoescaping always on.

Every archived value is an attacker's text, so escaping must be the default and not a call someone
remembers to place; a template that wants raw markup has to say `|safe` where a reviewer sees it.
"""

from __future__ import annotations

import jinja2


def environment(package: str, folder: str = "templates") -> jinja2.Environment:
    """An environment loading `folder` of `package`, autoescaping every template, failing on
    undefined names instead of printing nothing."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, folder),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
