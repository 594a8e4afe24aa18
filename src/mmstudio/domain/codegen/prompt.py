"""The prompt that asks a model for files in a shape the parser reads reliably (see parser.py)."""

from __future__ import annotations

from mmstudio.domain.codegen.catalog import Framework, TargetType
from mmstudio.providers.base import Message

SYSTEM = """You are an expert software engineer who writes complete, working code files.

Answer with the files only, every file in this exact shape:

File: <relative/path/with/extension>
```<language>
<the whole content of the file>
```

Rules:
- One `File:` line, then one fenced code block, for every file. Never put two files in one block.
- Paths are relative to the project root, use forward slashes, and never start with `/`, `~` or a
  drive letter, and never contain `..`.
- Write every file in full: no placeholders such as "...", "rest of the code" or "TODO: implement".
- When a file itself contains ``` fences (a README, for example), fence it with four backticks (````).
- Keep explanations out of the files; if something must be said, say it in one short sentence
  after the last file.
"""


def messages(*, name: str, description: str, framework: Framework, target: TargetType) -> tuple[Message, ...]:
    user = (
        f"Project: {name}\n"
        f"Framework: {framework.label} ({framework.guidance})\n"
        f"What to build: {target.label}: {target.guidance}.\n\n"
        f"Description:\n{description.strip()}\n\n"
        "Write the files now."
    )
    return (Message.text("system", SYSTEM), Message.text("user", user))
