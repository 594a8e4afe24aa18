"""The documented choices of Creator Studio: frameworks and target types, with what each asks for.

The ids are the API's and the CLI's values; an unknown one is refused with this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmstudio.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Framework:
    id: str
    label: str
    language: str  # the main language of its files
    guidance: str  # conventions the prompt asks for


@dataclass(frozen=True, slots=True)
class TargetType:
    id: str
    label: str
    guidance: str


FRAMEWORKS: dict[str, Framework] = {
    f.id: f
    for f in (
        Framework(
            "react",
            "React",
            "tsx",
            "React 18 function components with hooks, written in TypeScript (.tsx), "
            "components under src/components/.",
        ),
        Framework(
            "vue",
            "Vue",
            "vue",
            'Vue 3 single-file components (.vue) with <script setup lang="ts">, '
            "components under src/components/.",
        ),
        Framework(
            "svelte",
            "Svelte",
            "svelte",
            "Svelte 5 components (.svelte) with TypeScript, components under src/lib/.",
        ),
        Framework(
            "fastapi",
            "FastAPI",
            "python",
            "Python 3.12 with FastAPI and Pydantic v2 models, type hints everywhere, an app/ package.",
        ),
        Framework(
            "flask",
            "Flask",
            "python",
            "Python 3.12 with Flask 3 (blueprints for larger apps), type hints, an app/ package.",
        ),
        Framework(
            "node",
            "Node.js",
            "javascript",
            "Node.js 20 with ES modules (import/export), no build step, code under src/.",
        ),
        Framework(
            "python-cli",
            "Python CLI",
            "python",
            "A Python 3.12 command-line program using argparse from the standard library, with type hints.",
        ),
    )
}

TARGET_TYPES: dict[str, TargetType] = {
    t.id: t
    for t in (
        TargetType("component", "Component", "one reusable component (and its styles or test if useful)"),
        TargetType("page", "Page", "one complete page or screen, with the components it needs"),
        TargetType("api", "API", "HTTP API endpoints with request validation and error handling"),
        TargetType("module", "Module", "one importable module with a small public interface"),
        TargetType("script", "Script", "one runnable script"),
        TargetType(
            "full-project",
            "Full project",
            "a small complete project: source files, a dependency manifest and a README with how to run it",
        ),
    )
}


def framework(value: str) -> Framework:
    found = FRAMEWORKS.get(value.strip().lower())
    if found is None:
        raise InvalidRequest(
            f"unknown framework {value!r}; allowed: {', '.join(FRAMEWORKS)}", field="framework"
        )
    return found


def target_type(value: str) -> TargetType:
    found = TARGET_TYPES.get(value.strip().lower())
    if found is None:
        raise InvalidRequest(
            f"unknown targetType {value!r}; allowed: {', '.join(TARGET_TYPES)}", field="targetType"
        )
    return found
