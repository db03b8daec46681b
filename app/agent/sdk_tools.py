"""The OpenHands SDK's tool names and ours: an SDK agent's `tools: [{name, params}]` and
`include_default_tools` name the tools this server runs."""

# SDK tool name (the registered class name, or its snake_case spelling) -> our tool.
SDK_TOOL_NAMES = {
    "TerminalTool": "terminal",
    "terminal": "terminal",
    "BashTool": "terminal",
    "FileEditorTool": "file_editor",
    "file_editor": "file_editor",
    "TaskTrackerTool": "task_tracker",
    "task_tracker": "task_tracker",
}
# The SDK's default tools (`include_default_tools`), always present here.
DEFAULT_SDK_TOOLS = ("FinishTool", "ThinkTool")


def our_tools(sdk_tools: list[dict[str, object]]) -> list[str]:
    """Our tool names for an SDK agent's `tools` (finish and think are always added)."""
    names = [SDK_TOOL_NAMES.get(str(tool.get("name"))) for tool in sdk_tools]
    return list(dict.fromkeys(name for name in names if name is not None))
