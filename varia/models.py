"""The typed data of a job: request, recipes, render tasks and results, manifest, progress.

Every model here crosses a process boundary as plain JSON (through the pydantic data converter),
so callers in other languages or without varia installed see the same field names.

Over 300 lines on purpose: this is the wire format, one model after another with no logic
worth a module of its own; in one file a reviewer sees every payload a change could touch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from varia.names import parse_temp_name, temp_name

MAX_VARIATIONS = 10_000
"""The most variations one input may ask for."""

MAX_CONCURRENCY = 64
"""The most renders one job runs at once."""

MAX_THREADS = 256
"""The most FFmpeg threads a render may ask for (x264 uses at most 128; FFmpeg's option is a
C int, so a larger number failed every render, retried, only after the job had started).
Checked by `varia start` and by prepare."""

MAX_INPUTS = 1_000
"""The most input videos one job may take."""

MAX_TOTAL_VARIATIONS = 1_000_000
"""The most outputs one job may plan (inputs times variations): a cancel of 1,000,000 closed in
9 s; 10,000,000 made cleanup hold gigabytes and miss its heartbeats. Checked by `varia start`
and by prepare (the workflow's own checks stay as recorded histories replay them)."""

DEFAULT_MAX_INPUT_DURATION_S = 4 * 3600.0
"""Longest input accepted by default (seconds)."""
DEFAULT_MAX_INPUT_PIXELS = 8192 * 4320
"""Largest frame accepted by default (pixels: 8K DCI)."""
DEFAULT_MAX_INPUT_STREAMS = 64
"""Most streams (video, audio, subtitles, data) one input may have by default."""
DEFAULT_MAX_INPUT_BYTES = 64 * 1024**3
"""Largest input file accepted by default (bytes: 64 GiB)."""

PRIORITY_RANGE = (1, 5)
"""Task priorities a request may ask for: 1 is served first, 5 last (Temporal's priority key)."""

MAX_FAIRNESS_KEY_BYTES = 64
"""Temporal's limit on a fairness key."""

DEFAULT_CHUNK_SIZE = 400
"""Variations one workflow run renders before it continues as new (keeps history short)."""

JobState = Literal[
    "pending",
    "preparing",
    "running",
    "draining",
    "paused",
    "cancelling",
    "cleaning",
    "completed",
    "cancelled",
    "failed",
    "drained",
    "terminated",
    "timed_out",
]
FinalState = Literal["completed", "cancelled", "failed", "drained", "terminated", "timed_out"]
"""How a job ended; `terminated` and `timed_out` are written by the janitor, not the job."""
FINAL_STATES: frozenset[str] = frozenset(FinalState.__args__)  # type: ignore[attr-defined]


class JobRequest(BaseModel):
    """The workflow input: the JSON object of the public contract.

    Types are strict: `"2"`, `2.0` or `true` where an integer belongs is refused, not read
    as 2 or 1. Unknown fields are ignored so newer callers can talk to older workers, except
    one that looks like a misspelt known field (`validation.misspelt_fields`).
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    inputs: list[str]
    variations: int
    output_dir: str
    seed: int | None = Field(
        default=None,
        description="Seed of the recipes; None: derived from the job id (recipes.default_seed).",
    )
    concurrency: int = 1
    threads: int | None = Field(
        default=None, description="FFmpeg -threads per render; None lets FFmpeg choose."
    )
    chunk_size: int | None = Field(
        default=None,
        description="Variations per workflow run before continue-as-new (None: automatic).",
    )
    min_ssim: float | None = Field(
        default=None, description="Strength bound: an output at least this different (SSIM)."
    )
    max_ssim: float | None = Field(
        default=None, description="Strength bound: an output at most this different (SSIM)."
    )
    max_attempts: int | None = Field(
        default=None, description="Recipes tried per variation to meet the bounds (default 5)."
    )
    priority: int | None = Field(
        default=None,
        description="Task priority of the job's renders, 1 (first) to 5 (last); None: 3.",
    )
    fairness_key: str | None = Field(
        default=None,
        description="Renders of one key share the fleet fairly with other keys; None: job id.",
    )


class Recipe(BaseModel):
    """The seeded knobs of one variation; the argv builder turns them into FFmpeg filters."""

    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue_degrees: float = 0.0
    zoom: float = 1.0
    pan_x: float = 0.5
    pan_y: float = 0.5
    mirror: bool = False
    speed: float = 1.0
    noise: int = 0
    crf: int = 23


class StrengthBounds(BaseModel):
    """Optional bounds on an output's SSIM to its source, and how many recipes to try."""

    min_ssim: float | None = None
    max_ssim: float | None = None
    max_attempts: int = 5

    def admits(self, ssim: float) -> bool:
        """Whether an SSIM lies within the bounds."""
        low_ok = self.min_ssim is None or ssim >= self.min_ssim
        return low_ok and (self.max_ssim is None or ssim <= self.max_ssim)

    def describe(self) -> str:
        """The bounds in words, e.g. `SSIM from 0.80 to 0.95`."""
        low = "0" if self.min_ssim is None else f"{self.min_ssim:g}"
        high = "1" if self.max_ssim is None else f"{self.max_ssim:g}"
        return f"SSIM from {low} to {high}"


class MediaInfo(BaseModel):
    """What probing an input found."""

    path: str
    duration_s: float
    width: int
    height: int
    fps: float
    has_audio: bool
    demuxer: str | None = Field(
        default=None,
        description="FFmpeg demuxer the probe found (the render forces it with -f); None in "
        "histories recorded before it was probed.",
    )
    bytes: int | None = Field(
        default=None, description="The file's size when probed (None in older histories)."
    )
    mtime_ns: int | None = Field(
        default=None, description="Its modification time when probed, ns (None: older)."
    )
    inode: tuple[int, int] | None = Field(
        default=None,
        description="Its (device, inode) when probed: another file moved to its path is not it "
        "(None: older).",
    )
    pixel_aspect: tuple[int, int] | None = Field(
        default=None,
        description="A pixel's width to height (1:1 when the file does not say); renders keep "
        "it. None in older histories.",
    )
    video_stream: int | None = Field(
        default=None,
        description="The index of the video stream renders read (`demux.main_video`); None in "
        "older histories (the first video stream).",
    )
    rotation: int = Field(
        default=0,
        description="Degrees a player turns its frames (the display matrix; 90 for a phone's "
        "portrait video). Renders keep the frames as stored and the flag with them.",
    )


class InputLimits(BaseModel):
    """Resource limits an input must stay within (the worker's settings; refused at probe)."""

    model_config = ConfigDict(frozen=True)

    max_duration_s: float = DEFAULT_MAX_INPUT_DURATION_S
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_streams: int = DEFAULT_MAX_INPUT_STREAMS
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES


class RenderTask(BaseModel):
    """Everything one render activity needs; produced by the workflow's plan."""

    job_dir: str
    input_index: int
    variation: int
    media: MediaInfo
    recipe: Recipe
    output_name: str
    threads: int | None = None
    seed: int | None = Field(default=None, description="The job's seed (for re-drawn recipes).")
    bounds: StrengthBounds | None = None
    slot: int | None = Field(
        default=None,
        description="The job slot whose lock its FFmpeg holds (render-ahead; None: no lock).",
    )
    order: int | None = Field(
        default=None, description="Its place in the job: input index * variations + variation."
    )
    follows: int | None = Field(
        default=None,
        description="The `order` of the render before it in its slot: its FFmpeg goes first.",
    )

    @property
    def temp_name(self) -> str:
        """The name FFmpeg writes to before the output is checked and renamed into place."""
        return temp_name(self.output_name)

    @property
    def expected_duration_s(self) -> float:
        """The duration the output should have: the input's, changed by the speed knob."""
        return self.media.duration_s / self.recipe.speed

    @property
    def duration_tolerance_s(self) -> float:
        """How far the output's duration may differ from the expected one (a few frames)."""
        return max(0.1, 3.0 / self.media.fps)


class Quality(BaseModel):
    """The measured difference of one output, on luma frames sampled at the same relative
    positions of the source and the output (see `varia/quality.py`)."""

    positions: list[float] = Field(description="Relative positions of the sampled frames.")
    ssim: float = Field(description="Mean SSIM of the luma planes to the source (1 = same).")
    psnr_db: float = Field(description="Mean PSNR of the luma planes to the source, dB.")
    phash_distance: float = Field(description="Mean pHash Hamming distance to the source, bits.")
    phash: list[str] = Field(description="The output's pHash (64 bits, hex) per sample.")
    nearest_sibling: str | None = Field(
        default=None, description="The closest other variation of the same input, by pHash."
    )
    sibling_distance: float | None = Field(
        default=None, description="Mean pHash distance to the nearest sibling, bits."
    )
    near_duplicate: bool = Field(
        default=False, description="The nearest sibling is a near duplicate (see the README)."
    )


class FfmpegBuild(BaseModel):
    """Which FFmpeg made an output: its version line, build line and configuration hash."""

    version: str
    built_with: str = ""
    configuration_sha256: str = ""


class Attempt(BaseModel):
    """One recipe tried for a variation under strength bounds."""

    attempt: int
    stage: Literal["trial", "render"] = Field(
        description="trial: sampled frames through the filter graph; render: the whole output."
    )
    ssim: float
    accepted: bool


class RenderResult(BaseModel):
    """A finished variation: what the completion record holds for it.

    The optional fields are the record that reproduces and verifies the output; results of
    older workers lack them.
    """

    input_index: int
    variation: int
    path: str = Field(description="Relative to the job directory.")
    bytes: int
    duration_s: float
    recipe: Recipe | None = Field(default=None, description="The recipe actually used.")
    quality: Quality | None = None
    sha256: str | None = None
    ffmpeg: FfmpegBuild | None = None
    varia_version: str | None = None
    argv: list[str] | None = None
    attempts: list[Attempt] = Field(default_factory=list)


class OutputEntry(RenderResult):
    """One kept output as listed in the manifest: its render's result, its input and recipe."""

    recipe: Recipe
    input: str

    @classmethod
    def of(cls, result: RenderResult, input_path: str, recipe: Recipe) -> OutputEntry:
        """The manifest entry of a render's result (`recipe`: the one used, if it lacks it)."""
        return cls.model_validate({**dict(result), "input": input_path, "recipe": recipe})


class SheetEntry(BaseModel):
    """A contact sheet: a PNG of the source frame and each kept output's frame."""

    path: str = Field(description="Relative to the job directory.")
    inputs: list[int] = Field(description="The input indexes it shows.")
    cells: int = Field(description="Labelled cells: one per source shown, one per output shown.")
    outputs: list[str] = Field(description="The outputs it shows, in order.")
    omitted: int = Field(default=0, description="Kept outputs left off (the sheet is capped).")
    bytes: int
    sha256: str


class FigureRange(BaseModel):
    """The minimum and the median of one figure over a job's outputs."""

    min: float
    median: float


class QualitySummary(BaseModel):
    """A job's measured differences in brief (result, manifest, `varia status`)."""

    measured: int
    ssim: FigureRange
    psnr_db: FigureRange
    phash_distance: FigureRange
    sibling_distance: FigureRange | None = None
    near_duplicates: int = 0

    def line(self) -> str:
        """`min / median: SSIM 0.612 / 0.655, …` for people (status, the Web UI)."""
        figures = [
            ("SSIM", self.ssim, 3),
            ("PSNR dB", self.psnr_db, 1),
            ("pHash to source", self.phash_distance, 1),
            ("to nearest sibling", self.sibling_distance, 1),
        ]
        text = "min / median: " + ", ".join(
            f"{name} {f.min:.{d}f} / {f.median:.{d}f}" for name, f, d in figures if f is not None
        )
        if self.near_duplicates:
            text += f"; {self.near_duplicates} near duplicate(s)"
        return text


class Manifest(BaseModel):
    """`<job dir>/manifest.json`: the record a job leaves behind at the end of every run."""

    job_id: str
    state: FinalState
    run_id: str | None = Field(
        default=None,
        description="The workflow run it was written for: the run whose cleanup wrote it, or "
        "the terminated or timed-out run the janitor swept (None: written by older varia).",
    )
    seed: int
    total: int
    completed: int
    failed: int
    outputs: list[OutputEntry]
    removed: list[str]
    foreign: list[str] = Field(
        default_factory=list,
        description="Entries in the job dir the job did not create; left untouched.",
    )
    errors: list[str] = Field(default_factory=list)
    sheets: list[SheetEntry] = Field(
        default_factory=list, description="Contact sheets (varia-made PNGs in the job dir)."
    )
    quality: QualitySummary | None = None


class JobResult(BaseModel):
    """The workflow result: small at any job size, readable without varia."""

    job_id: str
    state: FinalState
    job_dir: str
    manifest: str
    total: int
    completed: int
    failed: int
    removed: int
    seed: int | None = Field(default=None, description="The seed the job ran with.")
    sheet: str | None = Field(default=None, description="Absolute path of the contact sheet.")
    sheets: list[str] = Field(default_factory=list, description="All contact sheets (absolute).")
    quality: QualitySummary | None = None


class RunningVariation(BaseModel):
    """A render in flight, as the progress query reports it."""

    input_index: int
    variation: int
    output: str


class Progress(BaseModel):
    """The `progress` query's answer."""

    job_id: str
    state: JobState
    total: int
    completed: int
    failed: int
    running: int
    percent: float
    job_dir: str | None = None
    draining: bool = False
    cancel_requested: bool = False
    running_variations: list[RunningVariation] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    eta_s: float | None = Field(default=None, description="Seconds left at the pace so far.")
    paused: bool = Field(default=False, description="A pause was asked for (and not resumed).")
    manifest: str | None = Field(default=None, description="Set once cleanup wrote it.")
    removed: int | None = Field(default=None, description="Files cleanup deleted.")
    queued: int = Field(
        default=0,
        description="Renders scheduled behind a running one in its job slot (render-ahead): "
        "they start the moment it exits. Not in `running` or `running_variations`.",
    )


class RenderProgress(BaseModel):
    """Signal `render_progress`: a long render tells its workflow how far it is (coarse)."""

    input_index: int
    variation: int
    fraction: float = Field(ge=0.0, le=1.0)


class RenderHeartbeat(BaseModel):
    """Heartbeat details of a render: live progress for the Web UI and the FFmpeg identity.

    `output` is the final output name and `recipe` one line of its knobs, for people; `temp`
    is the hidden path FFmpeg writes to. A retried attempt reads `pid`, `pid_create_time` and
    `temp` to find an FFmpeg left behind by the attempt before it.
    """

    percent: float = 0.0
    fps: float | None = None
    speed: float | None = None
    eta_s: float | None = None
    out_time_s: float = 0.0
    frame: int = 0
    output: str = ""
    recipe: str = ""
    pid: int | None = None
    pid_create_time: float | None = None
    temp: str = ""
    stop_queue: str | None = None  # the worker's own queue: a cancel is pushed there
    waiting_for_slot: int | None = None  # render-ahead: FFmpeg waits for this job slot

    def temp_path(self) -> str:
        """The temporary path of the attempt (older workers put it in `output`)."""
        if self.temp:
            return self.temp
        is_temp = parse_temp_name(self.output.rsplit("/", 1)[-1]) is not None
        return self.output if is_temp else ""


class StopRenders(BaseModel):
    """Input of `varia.stop_renders`: stop these renders of one run (a pushed cancel)."""

    workflow_id: str
    run_id: str
    activity_ids: list[str]


class RunRef(BaseModel):
    """One run of a workflow."""

    workflow_id: str
    run_id: str


class PrepareRequest(BaseModel):
    """Input of the prepare activity: confine the paths, open the job dir, probe the inputs."""

    job_id: str
    inputs: list[str]
    output_dir: str
    variations: int | None = Field(default=None, description="Per input (for the job log).")
    chain: str | None = Field(
        default=None,
        description="First run id of the workflow execution chain (None: older workflow code).",
    )
    probe: bool = Field(
        default=True,
        description="False: only make the job directory (a job cancelled before it started).",
    )
    threads: int | None = Field(
        default=None, description="The job's FFmpeg threads per render (checked before anything)."
    )


class PreparedJob(BaseModel):
    """What prepare found: the job directory and one `MediaInfo` per input, in order."""

    job_dir: str
    media: list[MediaInfo]


class CleanupRequest(BaseModel):
    """Input of the cleanup activity: the completion record and how the job ended."""

    job_id: str
    job_dir: str
    state: FinalState
    inputs: list[str]
    stems: list[str]
    variations: int
    seed: int
    results: list[RenderResult]
    failed: int
    errors: list[str] = Field(default_factory=list)
    use_ledger: bool = Field(
        default=False, description="Earlier runs' results are in the job's ledger file too."
    )
    chain: str | None = Field(
        default=None,
        description="First run id of the workflow execution chain (None: older workflow code).",
    )
    run_id: str | None = Field(
        default=None,
        description="The run the manifest is written for (None: the calling activity's run).",
    )


class JobCarry(BaseModel):
    """What one workflow run hands the next when it continues as new (compact at any size).

    The completion records of earlier runs live in the job directory's ledger, not here.
    """

    job_dir: str
    media: list[MediaInfo]
    next_index: int
    completed: int
    failed: int
    draining: bool = False
    errors: list[str] = Field(default_factory=list)
    runs: int = 1
    paused: bool = False


class DiscardRequest(BaseModel):
    """Input of the discard activity: partial files of renders a pause stopped."""

    job_id: str
    job_dir: str
    names: list[str]
    chain: str | None = None


class LedgerAppend(BaseModel):
    """Input of the record activity: results to append to the job's ledger file."""

    job_id: str
    job_dir: str
    results: list[RenderResult]
    chain: str | None = Field(
        default=None,
        description="First run id of the workflow execution chain (None: older workflow code).",
    )
