"""Text and effort signals from support conversations: transformer sentiment, critical moments,
repeated questions, frustration trajectory. Heavy libraries (torch, transformers) are imported
only when a model is first used, never at import time."""
