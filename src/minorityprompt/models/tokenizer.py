"""The CLIP tokenizer, built offline from the BPE file that PyPI packages ship.

OpenAI's CLIP byte-pair encoding (`bpe_simple_vocab_16e6.txt.gz`) is packaged inside
`clip-anytorch` (module `clip`) and `open_clip_torch` (module `open_clip`). The Hugging Face
`CLIPTokenizer` needs a `vocab.json` and a `merges.txt`; this module derives both from the BPE
file so that token ids equal those of `openai/clip-vit-large-patch14` (BOS 49406, EOS 49407).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from ..errors import MinorityPromptError

logger = logging.getLogger(__name__)

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# CLIP keeps the first 48,894 merges of the file: 49,408 ids = 512 byte symbols + merges + 2.
NUM_MERGES = 49152 - 256 - 2
MODEL_MAX_LENGTH = 77


def find_bpe_file() -> Path:
    """Locate the CLIP BPE file inside an installed `clip` or `open_clip` package."""
    for module_name in ("clip", "open_clip"):
        spec = importlib.util.find_spec(module_name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / BPE_FILE_NAME
            if candidate.is_file():
                return candidate
    raise MinorityPromptError(
        f"CLIP's BPE file {BPE_FILE_NAME} was not found; install `clip-anytorch` or "
        "`open_clip_torch`, which ship it."
    )


def _byte_symbols() -> list[str]:
    """Map each of the 256 byte values to a printable unicode character (GPT-2's scheme).

    Printable Latin-1 bytes map to themselves; the others map to code points from 256 up, in
    byte order. The returned list is indexed by byte value.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    next_code_point = 256
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(next_code_point)
            next_code_point += 1
    return [symbols[byte] for byte in sorted(symbols, key=lambda b: (b not in printable, b))]


def build_vocab_and_merges(bpe_file: Path) -> tuple[dict[str, int], list[str]]:
    """Derive CLIP's token-to-id table and merge list from its BPE file."""
    with gzip.open(bpe_file, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    # The first line is a version header.
    merges = lines[1 : NUM_MERGES + 1]

    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, merges


def _cache_dir() -> Path:
    root = os.environ.get("MINORITYPROMPT_CACHE") or Path.home() / ".cache" / "minorityprompt"
    return Path(root) / "clip-tokenizer"


def write_tokenizer_files(folder: str | os.PathLike[str], pad_token: str = EOS_TOKEN) -> Path:
    """Write `vocab.json`, `merges.txt` and the tokenizer config of the offline CLIP tokenizer.

    Args:
        folder: Destination; created if missing.
        pad_token: `"<|endoftext|>"` as in SD 1.x, or `"!"` as in SD 2.x and SDXL's second
            tokenizer.

    Returns:
        The folder, loadable with `CLIPTokenizer.from_pretrained`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(find_bpe_file())
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    config = {
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": pad_token,
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


@lru_cache(maxsize=4)
def offline_clip_tokenizer(pad_token: str = EOS_TOKEN):
    """Build a `transformers.CLIPTokenizer` with CLIP's real vocabulary and no download.

    The files are written once under `$MINORITYPROMPT_CACHE` (default
    `~/.cache/minorityprompt`) and reused.
    """
    from transformers import CLIPTokenizer

    name = "pad-eos" if pad_token == EOS_TOKEN else "pad-" + str(ord(pad_token[0]))
    folder = _cache_dir() / name
    if not (folder / "merges.txt").is_file():
        logger.info("Writing the offline CLIP tokenizer files to %s", folder)
        write_tokenizer_files(folder, pad_token=pad_token)
    return CLIPTokenizer.from_pretrained(str(folder))
