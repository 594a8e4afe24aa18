"""Creator Studio: code generation through the user's own model, local first with cloud fallback."""
