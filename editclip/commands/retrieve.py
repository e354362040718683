"""``editclip retrieve``: rank stored images by one head's direct contribution, against a text or an image."""

from __future__ import annotations

import argparse

from .._io import staged_dir, write_json
from ..errors import EditclipError
from ..names import parse_head
from ._common import add_overwrite_arg
from .textspan import add_store_arg, check_out, open_store


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "retrieve",
        help="property-based retrieval: images whose contribution to one head is closest to a query",
        description="Rank the images of a stored decomposition by the cosine similarity of one head's "
        "(centred) direct contribution to a text embedding or to another image's contribution to that head; "
        "write results.json and contact_sheet.png.",
    )
    add_store_arg(parser)
    parser.add_argument("--head", required=True, help="head, e.g. L22.H2 (0-based)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="query text")
    query.add_argument("--image", help="query image: its id in the store")
    parser.add_argument("--top", type=int, default=8, help="images to return (default 8)")
    parser.add_argument("--no-centre", dest="centre", action="store_false",
                        help="compare raw contributions, without subtracting the head's mean")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="device for the text tower (default cpu)")
    parser.add_argument("--out", required=True, help="output folder")
    add_overwrite_arg(parser, "the files of a non-empty --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrieval import contact_sheet, rank_by_head
    from ..store import backbone_for_store
    from ..text import encode_texts

    out = check_out(args)
    store = open_store(args.decomposition)
    shape = store.meta["shape"]
    head = parse_head(args.head, shape["layers"], shape["heads"])
    if args.top < 1:
        raise EditclipError(f"--top must be >= 1; got {args.top}")
    ids = store.ids
    query_index = None
    if args.image is not None:
        if args.image not in ids:
            raise EditclipError(f"--image {args.image!r} is not in the store; ids look like {ids[:3]}")
        query_index = ids.index(args.image)

    contributions = store.read("heads", index=(head.layer, head.head))  # [N, D]
    if query_index is None:
        query = encode_texts(backbone_for_store(store, args.device), [args.text], progress=False)[0]
    else:
        query = contributions[query_index]
    order, scores = rank_by_head(contributions, query, centre=args.centre, exclude=query_index)
    order, scores = order[: args.top].tolist(), scores[: args.top].tolist()

    what = f"text {args.text!r}" if args.text is not None else f"image {args.image}"
    results = [{"rank": r + 1, "id": ids[i], "index": i, "path": str(store.image_path(i)), "score": s}
               for r, (i, s) in enumerate(zip(order, scores, strict=True))]  # fmt: skip
    with staged_dir(out) as stage:
        write_json(stage / "results.json", {"store": store.describe(), "head": str(head), "query": what,
                                            "centred": args.centre, "results": results})  # fmt: skip
        contact_sheet(
            [r["path"] for r in results],
            [f"#{r['rank']} {r['id']}  {r['score']:.3f}" for r in results],
            stage / "contact_sheet.png",
            title=f"{head}: nearest to {what} (cosine of {'centred ' if args.centre else ''}head contributions)",
            query=(store.image_path(query_index), f"query {args.image}") if query_index is not None else None,
        )
    for r in results:
        print(f"{r['rank']:>3}  {r['score']:.3f}  {r['id']}")
    print(f"wrote {out}/results.json, contact_sheet.png")
    return 0
