"""Errors a user can cause. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class GapSparkError(Exception):
    """A problem with the input, the config or the environment, explained in one sentence."""

    exit_code = 2


class DatasetError(GapSparkError):
    """The dataset is missing, incomplete or inconsistent."""


class IngestError(GapSparkError):
    """A raw CSV cannot be ingested (bad header, too many bad rows, missing file)."""


class ConfigError(GapSparkError):
    """The config names an unknown key or holds a value of the wrong type."""


_URI = r"((?:file|hdfs|s3a?|s3n|gs|abfss?|wasbs?):/[^\s'\"\]\[,;]+)"
_INPUT_PROBLEMS = (
    "FileNotFoundException", "does not exist", "PATH_NOT_FOUND", "is not a Parquet file",
    "Could not read footer", "CANNOT_READ_FILE_FOOTER", "FAILED_READ_FILE", "ParquetDecodingException",
    "EOFException", "Corrupt", "corrupt",
)


def describe_input_failure(exc: BaseException) -> str | None:
    """One line for a Spark/JVM failure caused by a missing or corrupt input file, else None.

    Spark reports these as Java exceptions with long traces; the user needs the file and the problem.
    """
    import re
    from urllib.parse import unquote

    text = str(exc)
    if not any(marker in text for marker in _INPUT_PROBLEMS):
        return None
    match = re.search(_URI, text)
    where = unquote(match.group(1).rstrip(".")) if match else "an input file"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("at ")]
    # The most specific line is the last one naming the problem (the innermost "Caused by").
    telling = [line for line in lines if any(marker in line for marker in _INPUT_PROBLEMS)]
    detail = re.sub(r"^(Caused by: )?([\w.$]+(Exception|Error): )+", "", (telling or lines or [""])[-1])
    detail = detail.replace(match.group(1), "").strip(" .") if match and detail else detail
    return f"cannot read {where}: it is missing or corrupt ({detail[:200]})"
