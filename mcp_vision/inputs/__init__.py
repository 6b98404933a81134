"""Untrusted media, from a source string to checked pixels.

- `sources`: a path, file:// URI, URL or data: URI becomes checked bytes (the file boundary, size limits)
- `fetch`: http(s) URLs, public addresses only
- `formats`: the image formats read, one list for sniffing, decoding, messages and docs
- `images`, `pdf`, `video`: bytes to RGB images, PDF pages (text layers, renders) and sampled frames
- `diff`: the deterministic pixel comparison of two images
- `sandbox`: decoder processes, so a decoder that crashes, hangs or runs out of memory cannot take the
  server down

Nothing here imports torch or MCP; the heavy decoders (Pillow, pillow-heif, PyMuPDF, PyAV) are imported where used.
"""
