"""``genpercept embedding``: compute and cache a model's empty-text embedding."""

from pathlib import Path

from ..errors import GenPerceptError


def add_commands(commands):
    embedding = commands.add_parser("embedding", help="compute and cache a model's empty-text embedding")
    embedding.add_argument("model", type=Path, help="model folder")
    source = embedding.add_mutually_exclusive_group(required=True)
    source.add_argument("--text-encoder", type=Path, help="folder with an SD2-family text_encoder/ + tokenizer/")
    source.add_argument("--npy", type=Path, help="a padded [77,D] empty_text_embed.npy")
    source.add_argument("--from-github", action="store_true",
                        help="download GenPercept's own GenPercept_v1/empty_text_embed.npy (needs internet)")
    embedding.set_defaults(run=run_embedding)


def run_embedding(args) -> int:
    if not args.model.is_dir():
        raise GenPerceptError(f"{args.model} is not a folder")
    from ..models.embedding import (download_official_npy, embeddings_from_npy, embeddings_from_text_encoder,
                                    save_embedding_cache)

    if args.text_encoder:
        embeddings = embeddings_from_text_encoder(args.text_encoder)
    else:
        npy = args.npy or download_official_npy(args.model / "empty_text_embed.npy")
        embeddings = embeddings_from_npy(npy)
    target = save_embedding_cache(args.model, embeddings)
    print(f"wrote {target} (v2 {list(embeddings['v2'].shape)}, v1 {list(embeddings['v1'].shape)})")
    return 0
