"""`import yaml` without compiling PyYAML's slowest regular expression.

`yaml.reader` compiles `Reader.NON_PRINTABLE`, a negated character class whose
ranges reach U+10FFFF, when it is imported: 5.5 ms, a quarter of what the
compiler adds to a small `dagu start` and a tenth of a `dagu validate`
(issue 17).  The same set written the other way round (the characters YAML
calls non-printable, four short ranges and five single ones) compiles in
0.05 ms.  So before PyYAML is first imported, that pattern is put into `re`'s
cache under the source text PyYAML compiles, and its `re.compile` finds it there.

What a search matches is the same character for character: tests/compiler/
test_yaml_import.py compares both patterns over every code point.  `re._cache`
is the standard library's own (3.11 and 3.12 look there before compiling); where
it is missing or PyYAML is already imported, nothing is seeded and only the
time differs.  dagu.settings, which reads config.yaml only when there is one,
imports PyYAML directly.
"""

from __future__ import annotations

import re
import sys

# yaml/reader.py: `NON_PRINTABLE = re.compile('[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]')`
PYYAML_NON_PRINTABLE = "[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]"
# every code point outside that set: C0 controls but tab, LF and CR; DEL and the C1 controls but
# NEL; the surrogates; U+FFFE and U+FFFF
SAME_SET = "[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x84\x86-\x9F\uD800-\uDFFF\uFFFE\uFFFF]"


def seed_printable_check() -> None:
    cache = getattr(re, "_cache", None)
    if "yaml.reader" in sys.modules or not isinstance(cache, dict):
        return
    cache.setdefault((str, PYYAML_NON_PRINTABLE, 0), re.compile(SAME_SET))


seed_printable_check()

import yaml  # noqa: E402  (after the seed, which is the point)

__all__ = ["yaml"]
