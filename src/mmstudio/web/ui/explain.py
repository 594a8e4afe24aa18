"""Errors in words a user understands, with the next step, for the pages.

The router's errors are precise but technical ("ollama/llama3.2: connection refused (http://...)").
The page shows a headline saying what happened and what to do, then the precise error underneath.
"""

from __future__ import annotations

import re

_URL = re.compile(r"https?://([\w.\-\[\]:]+)")
_MODEL = re.compile(r"\b(ollama|lmstudio|openai|anthropic|gemini|xai|[a-z0-9_\-]+)/[\w.:\-]+")
PROVIDER_NAMES = {
    "ollama": "Ollama",
    "lmstudio": "LM Studio",
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "gemini": "Google Gemini",
    "xai": "xAI",
}
KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "xai": "XAI_API_KEY",
}


def _who(text: str) -> tuple[str, str | None, str | None]:
    """(display name, host:port, provider id) of the first model or URL the error names."""
    provider = None
    match = _MODEL.search(text)
    if match:
        provider = match.group(1)
    url = _URL.search(text)
    host = url.group(1) if url else None
    name = PROVIDER_NAMES.get(provider or "", provider or "The model's server")
    return name, host, provider


def headline(error: str) -> str | None:
    """One sentence: what went wrong and what to do next; None when nothing better can be said."""
    text = error.lower()
    name, host, provider = _who(error)
    where = f"{name} at {host}" if host else name
    if any(
        w in text for w in ("refused", "not answering", "cannot connect", "connection error", "unreachable")
    ):
        return f"{where} is not answering — is it running?"
    if "timed out" in text or "timeout" in text:
        return f"{where} took too long to answer. Try again, or choose a faster model."
    if "401" in text or "403" in text or "unauthorized" in text or "api key" in text or "invalid key" in text:
        variable = KEY_VARIABLES.get(provider or "")
        hint = f" Check {variable}." if variable else " Check the key you gave for it."
        return f"{name} refused the API key.{hint}"
    if "429" in text or "rate limit" in text or "too many requests" in text:
        return f"{name} is rate limiting requests. Wait a moment and try again."
    if "no model" in text or "register a model" in text or "not in the registry" in text:
        return "No model can answer right now. Add one on the onboarding page (/onboarding) or switch model."
    if "context" in text and ("length" in text or "too long" in text or "window" in text):
        return (
            "The conversation is too long for this model. "
            "Start a new chat or choose a model with a longer context."
        )
    return None


def explain(error: str | None) -> str:
    """Headline then detail, as plain text (the template escapes it)."""
    if not error:
        return "The answer failed without a reason. Try again."
    first = headline(error)
    return f"{first}\n{error}" if first else error
