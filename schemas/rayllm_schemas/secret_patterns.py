"""What a secret looks like, stated once.

Used by ``ray-llm validate`` (rule RL009), by the chart's template check (generated into
``templates/_generated.tpl`` by ``ray-llm schema``, for Helm-only users) and by the test
suite's scanner of rendered manifests. Every pattern is valid in both Python's ``re`` and
Go's RE2 (no look-around, no backreferences), since Helm evaluates the same text.
"""

from __future__ import annotations

from typing import List, Tuple

#: (what it is, pattern): literal credentials in known formats, found anywhere in a value.
TOKEN_FORMATS: List[Tuple[str, str]] = [
    ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{20,}"),
    ("an OpenAI-style API key", r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"),
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    ("an AWS access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[0-9A-Z]{16}\b"),
    ("a Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("a PEM private key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("credentials in a URL", r"\b[a-z][a-z0-9+.-]*://[^/\s:@\"'{}]+:[^/\s@\"'{}]+@[^\s/\"']+"),
    ("a bearer token", r"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{20,}=*"),
]

#: Env var names that carry a secret: a whole "_"-separated word, so TOKENIZERS_PARALLELISM passes.
SECRETISH_ENV_NAME = r"(?i)(^|_)(token|secret|password|passwd|api_?key|access_?key|private_?key|credentials?)(_|$)"
#: Env var names that point at a mounted Secret instead (HF_TOKEN_PATH, API_KEY_FILE): they pass.
SECRET_POINTER_NAME = r"(?i)_(path|file|dir|name)$"
_KEY_WORDS = r"token|secret|password|passwd|api_?keys?|access_?key|private_?key|credentials?"
#: Keys inside what the chart copies verbatim (builder args, engine_kwargs) whose inline string is a secret.
SECRETISH_KEY = rf"(?i)({_KEY_WORDS})$"
#: The same keys found in the JSON text of such a section, holding a string or a list of strings
#: (how the chart's template scans it: Go templates cannot walk a tree with the key at hand).
SECRETISH_KEY_IN_JSON = rf'"[^"]*(?i:{_KEY_WORDS})":("[^"]|\[")'
