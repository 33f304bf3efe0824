"""`minillm rag index FOLDER --out INDEX` and `minillm rag query INDEX "question"`: retrieval-
augmented generation over a folder of text files (rag.py). With --run (a `minillm train` run
folder) the chunks are also embedded by that model, enabling --method dense|hybrid, --rerank and
--generate at query time."""
import os
import sys
import time

from ..inference import generate
from ..reasoning.lm import sample_continuations
from ..reasoning.rag import RAGIndex, build_prompt
from ..run_folder import load_run
from ..train import fmt_time
from .args import UsageError, existing_folder, nonneg_float, nonneg_int, output_folder, positive_int


def _load_run(run_dir):
    return load_run(run_dir, "--run")


def _progress(stream, width=30):
    """progress(done, total) drawing `embedding chunks [=====     ] 40/100 ETA 0m03s` in place."""
    t0 = time.perf_counter()

    def show(done, total):
        bar = "=" * (width * done // max(total, 1))
        eta = (time.perf_counter() - t0) / max(done, 1) * (total - done)
        stream.write(f"\rembedding chunks [{bar:<{width}}] {done}/{total} ETA {fmt_time(eta)}")
        stream.flush()
    return show


def register(subparsers):
    p = subparsers.add_parser("rag", help="retrieval-augmented generation over a folder of text files",
                              description=__doc__)
    sub = p.add_subparsers(dest="rag_command", metavar="{index,query}")
    pi = sub.add_parser("index", help="chunk and index the text files of a folder")
    pi.add_argument("folder", type=existing_folder, help="folder of .txt/.md/.rst files (searched recursively)")
    pi.add_argument("--out", required=True, type=output_folder, help="index folder to write")
    pi.add_argument("--chunk-size", type=positive_int, default=800, help="characters per chunk")
    pi.add_argument("--overlap", type=nonneg_int, default=100, help="characters shared by neighbouring chunks")
    pi.add_argument("--run", default=None, type=existing_folder, help="a `minillm train` run folder: embed the chunks with its model")
    pi.set_defaults(func=cmd_index)
    pq = sub.add_parser("query", help="retrieve chunks for a question and print the RAG prompt")
    pq.add_argument("index", type=existing_folder, help="index folder written by `minillm rag index`")
    pq.add_argument("question")
    pq.add_argument("--k", type=positive_int, default=4, help="chunks to retrieve")
    pq.add_argument("--method", default=None, choices=["bm25", "dense", "hybrid"],
                    help="default: hybrid when the index has embeddings, else bm25")
    pq.add_argument("--rerank", action="store_true", help="rerank by the model's query likelihood")
    pq.add_argument("--run", default=None, type=existing_folder, help="run folder of the model (default: the one used to index)")
    pq.add_argument("--generate", type=nonneg_int, default=0, metavar="N", help="also generate N answer tokens")
    pq.add_argument("--temperature", type=nonneg_float, default=0.0, help="0 = greedy")
    pq.add_argument("--max-prompt-tokens", type=positive_int, default=None, help="cut the retrieved context to fit")
    pq.set_defaults(func=cmd_query)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_index(args, out=None):
    out = out or sys.stdout
    if args.overlap >= args.chunk_size:
        raise UsageError(f"--overlap: expected less than --chunk-size {args.chunk_size}, got {args.overlap}")
    model = tokenizer = None
    meta = {}
    if args.run:
        model, tokenizer = _load_run(args.run)
        meta["run"] = os.path.abspath(args.run)
    print(f"indexing {args.folder}" + (f", embedding the chunks with {args.run}" if args.run else ""),
          file=sys.stderr, flush=True)
    index = RAGIndex.from_folder(args.folder, chunk_size=args.chunk_size, overlap=args.overlap,
                                 model=model, tokenizer=tokenizer, meta=meta, progress=_progress(sys.stderr))
    sys.stderr.write("\n" if args.run else "")
    index.save(args.out)
    n_docs = len({c.source for c in index.chunks})
    print(f"indexed {len(index.chunks)} chunks from {n_docs} files -> {args.out}"
          + (" (with dense embeddings)" if index.dense is not None else ""), file=out)
    return 0


def cmd_query(args, out=None):
    out = out or sys.stdout
    index = RAGIndex.load(args.index)
    run = args.run or index.meta.get("run")
    method = args.method or ("hybrid" if index.dense is not None else "bm25")
    need_model = method != "bm25" or args.rerank or args.generate > 0
    model = tokenizer = None
    if need_model:
        if not run:
            raise UsageError("--run: a model is needed for dense/hybrid retrieval, --rerank and --generate")
        model, tokenizer = _load_run(run)
    hits = index.retrieve(args.question, k=args.k, method=method, model=model, tokenizer=tokenizer,
                          rerank_with_model=args.rerank)
    print(f"top {len(hits)} chunks ({method}{' + rerank' if args.rerank else ''}):", file=out)
    for i, (c, s) in enumerate(hits, start=1):
        preview = " ".join(c.text.split())[:100]
        print(f"  [{i}] {s:8.4f}  {c.source}:{c.start}-{c.end}  {preview}", file=out)
    prompt = build_prompt(args.question, [c for c, _ in hits], tokenizer=tokenizer,
                          max_tokens=args.max_prompt_tokens)
    print("\nprompt:\n" + prompt, file=out)
    if args.generate > 0:
        ids = tokenizer.encode(prompt)
        new = sample_continuations(model, ids, 1, args.generate, temperature=args.temperature, seed=0)[0] \
            if args.temperature > 0 else _greedy(model, ids, args.generate)
        print("\nanswer:" + tokenizer.decode([int(t) for t in new]), file=out)
    return 0


def _greedy(model, ids, n):
    limit = model.config.max_seq_len
    return generate(model, ids[-max(1, limit - n):], n)
