"""The remote engine: any OpenAI-compatible chat-completions server (vLLM, LMDeploy's `api_server`,
llama.cpp's `llama-server`) behind the same boundary, over httpx2. Never imports torch.

`MCP_VISION_BACKEND=openai` selects it: "openai" names the protocol the engine speaks, not a vendor; the
engine itself is `RemoteBackend`. One module per role: `engine` (the Backend: the engine check, chat,
reading the stream), `http` (requests, retries, deadline, cancellation, TLS), `errors` (what the engine
says, as errors that say what to change), `messages` (turns as chat-completions messages).

What differs from the local engine, and where callers see it:
- The engine tiles images with its own settings; `ChatResult.tiles` reports the budget each image was
  sent with, not a measured count. One-tile images (video frames) are sent already at InternVL's
  448x448 input size, so any engine makes exactly one tile of them, as the local engine does.
- Token counts come from the engine's final `usage` chunk (`stream_options.include_usage`); an engine
  that sends none gets 0 for prompt and output tokens. `image_tokens` is always 0: engines do not
  report it.
- The conversation is re-sent whole on every call (sessions stay in the MCP server); the engine's
  prefix caching is what makes a follow-up cheap.
- LMDeploy's InternVL path reads only the first text item of a message and places images where
  `<IMAGE_TOKEN>` markers stand, so for LMDeploy (recognised by `owned_by` in `GET /models`) each user
  message is one text with markers, and each image carries its tile budget as `max_dynamic_patch`.
"""

from .engine import RemoteBackend
from .messages import TILE_SIZE, encode_image

__all__ = ["RemoteBackend", "TILE_SIZE", "encode_image"]
