"""The text runtime: the sentence encoder (ONNX Runtime, OpenVINO or PyTorch, its export kept in a
cache folder), the static token table distilled from it, the sentiment heads and their model, the
SQLite cache of text scores, and loading all of it for an entry point (`text.loading`).

It sits below features/ and serving/, which both use it, and imports neither. Every function takes
its paths, threads and runtime as arguments; `text.loading` is the one place that reads them from a
Settings object. Heavy libraries (torch, transformers, onnxruntime) are imported only when a model
is first used, never at import time."""
