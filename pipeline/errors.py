"""Errors poxi raises on purpose.

Every error carries a Chinese message that names the fix and an exit code. The CLI prints the message
on one line and exits with the code; nothing here formats tracebacks or logs.

Exit codes (README "退出码", `poxi --help`): 0 done, 1 written but failed its checks (or an eval gate),
2 unusable input or settings, 3 the model service failed, 4 the index store (Chroma) failed,
5 a time limit passed (a service that stopped answering, or the whole draft's, eval case's or search's), 130
interrupted or cancelled.
"""

EXIT_CODES = {  # code -> what it means, as `poxi --help` and the README list them
    0: "完成（起草的初稿通过了检查）",
    1: "初稿已写出但未通过检查（poxi check、poxi eval 同理）",
    2: "输入或设置无法使用（文件、参数、配置、运行记录损坏等）",
    3: "模型服务出错（连不上、拒绝请求、反复返回错误或无法解析的内容）",
    4: "索引出错（Chroma 服务连不上或报错，本机索引读写失败）",
    5: "超时：模型服务或 Chroma 服务长时间无响应，或超过整次起草、评测用例、检索的总时限（运行记录已保存，可续写）",
    130: "被中断或取消",
}


class PoxiError(Exception):
    """Base for expected failures. `exit_code` 2 means unusable input or setup."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(PoxiError):
    """A file or argument the user gave cannot be used (missing, empty, binary, broken)."""


class IndexError_(PoxiError):
    """The on-disk index is missing or was built differently (another embedder)."""


class StoreError(IndexError_):
    """The index store failed: a Chroma server unreachable, frozen or answering errors, a local read failing."""

    exit_code = 4


class ModelError(PoxiError):
    """A chat model could not be reached, refused the request, or kept returning unusable output."""

    exit_code = 3


class ModelTimeout(ModelError):
    """A model call ran past its time limit (silence or the whole call): the service is hung or far too slow."""

    exit_code = 5


class DeadlineExceeded(PoxiError):
    """A time limit passed: a whole draft, eval case or search, or a service that stopped answering. Deliberately
    not a ModelError: callers that retry a failed model call (the chain does once) must not wait a second time."""

    exit_code = 5


class Cancelled(PoxiError):
    """The caller cancelled a running model call or run (the workbench's 取消); not a failure of poxi's."""

    exit_code = 130
