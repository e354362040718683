"""``editclip retrieve``: rank stored images by one head's direct contribution, against a text or an image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import staged_dir, write_json
from ..errors import EditclipError
from ..names import parse_head
from ._common import add_overwrite_arg
from .textspan import add_store_arg, check_out, open_store

if TYPE_CHECKING:
    from ..store import DecompositionStore


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "retrieve",
        help="property-based retrieval: images whose contribution to one head is closest to a query",
        description="Rank the images of a stored decomposition by the cosine similarity (or dot product) of one "
        "head's (centred) direct contribution to a text embedding or to an image's contribution to that head; the "
        "image is a stored one or any image file, decomposed on the fly with the store's model. Writes "
        "results.json and contact_sheet.png.",
    )
    add_store_arg(parser)
    parser.add_argument("--head", required=True, help="head, e.g. L22.H2 (0-based)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="query text")
    query.add_argument("--image", help="query image: its id in the store, or an image file (decomposed with the "
                       "store's model and preprocessing)")  # fmt: skip
    parser.add_argument("--top", type=int, default=8, help="images to return")
    parser.add_argument("--no-centre", dest="centre", action="store_false",
                        help="compare raw contributions, without subtracting the head's mean")  # fmt: skip
    parser.add_argument("--score", choices=("cosine", "dot"), default="cosine",
                        help="cosine similarity or the official notebook's plain dot product (with "
                        "--no-centre: of the raw contributions)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="device for the model")
    parser.add_argument("--out", required=True, help="output folder")
    add_overwrite_arg(parser, "the files of a non-empty --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrieval import contact_sheet, image_contribution, rank_by_head
    from ..store import backbone_for_store
    from ..text import encode_texts

    out = check_out(args)
    store = open_store(args.store, "retrieve", "it ranks individual images")
    shape = store.meta["shape"]
    head = parse_head(args.head, shape["layers"], shape["heads"])
    store.head_positions([head.layer], f"--head {head}")  # a layer-subset store may hold its layer summed only
    if args.top < 1:
        raise EditclipError(f"--top must be >= 1; got {args.top}")
    ids = store.ids
    query_index, query_file = None, None
    if args.image is not None:
        query_index, query_file = _image_query(store, args.image)

    contributions = store.read("heads", index=(head.layer, head.head))  # [N, D]
    if query_file is not None:
        query = image_contribution(store, query_file, head.layer, head.head, backbone_for_store(store, args.device))
    elif query_index is not None:
        query = contributions[query_index]
    else:
        query = encode_texts(backbone_for_store(store, args.device), [args.text], progress=False)[0]
    order, scores = rank_by_head(contributions, query, centre=args.centre, exclude=query_index, score=args.score,
                                 image_query=query_file is not None)  # fmt: skip
    order, scores = order[: args.top].tolist(), scores[: args.top].tolist()

    what = f"text {args.text!r}" if args.text is not None else f"image {args.image}"
    query_path = store.image_path(query_index) if query_index is not None else query_file
    results = [{"rank": r + 1, "id": ids[i], "index": i, "path": str(store.image_path(i)), "score": s}
               for r, (i, s) in enumerate(zip(order, scores, strict=True))]  # fmt: skip
    score_name = "cosine" if args.score == "cosine" else "dot product"
    with staged_dir(out) as stage:
        write_json(stage / "results.json", {"store": store.describe(), "head": str(head), "query": what,
                                            "query_file": str(query_file) if query_file is not None else None,
                                            "centred": args.centre, "score": args.score,
                                            "results": results})  # fmt: skip
        contact_sheet(
            [r["path"] for r in results],
            [f"#{r['rank']} {r['id']}  {r['score']:.3f}" for r in results],
            stage / "contact_sheet.png",
            title=f"{head}: nearest to {what} ({score_name} of {'centred ' if args.centre else ''}head contributions)",
            query=(query_path, f"query {args.image}") if query_path is not None else None,
        )
    for r in results:
        print(f"{r['rank']:>3}  {r['score']:.3f}  {r['id']}")
    print(f"wrote {out}/results.json, contact_sheet.png")
    return 0


def _image_query(store: DecompositionStore, image: str) -> tuple[int | None, Path | None]:
    """(row, None) for a stored image (an id, or the file of a stored row), (None, file) for any other file."""
    if image in store.ids:
        return store.ids.index(image), None
    file = Path(image).expanduser()
    if not file.is_file():
        raise EditclipError(f"--image {image!r} is not in the store (ids look like {store.ids[:3]}) and is not an "
                            "image file")  # fmt: skip
    stored = [Path(p) for p in store.meta["paths"]]
    resolved = file.resolve()
    return (stored.index(resolved), None) if resolved in stored else (None, file)
