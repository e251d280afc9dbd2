"""Text and effort signals from support conversations: sentence-level sentiment of messages,
critical moments, repeated questions, frustration trajectory. The models that score the text (the
encoder, the sentiment heads, the cache) are the text runtime, in `text/`."""
