"""Chat Studio: conversations as trees of messages, tools, documents, compare arena."""
