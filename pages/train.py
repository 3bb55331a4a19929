"""Train: configure a run, start it in the background, watch it learn."""

from __future__ import annotations

import streamlit as st

from hcl_core.comparisons import differences
from hcl_core.config import FIELDS, ConfigError, RunConfig
from hcl_core.jobs import JobLimitError, JobState
from hcl_core.plots import LOSS_COLORS
from hcl_core.plots.compare import legend_labels
from hcl_core.plots.live import live_loss_html
from hcl_core.plots.markup import figure_html
from hcl_core.plots.training import Series, clamp_figure, geometry_figure, loss_figure, probe_figure
from hcl_core.registry import APP_DATASET, DATASETS, LOSSES
from hcl_core.store import RunFileError, load_run
from ui import FIRST_POINT_REFRESH_S, LIVE_REFRESH_S, all_runs, job_manager, reload_run, run_history
from ui.comparison import comparison_form, job_queue, live_comparison
from ui.controls import KEY, field_control, field_help, keep_across_pages
from ui.figures import chart, interactive_charts
from ui.formulas import EXPLANATIONS, FORMULAS
from ui.glossary import glossary
from ui.navigation import through_app

through_app()  # first: a deep link to a fresh server must run through app.py

BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024]
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
STOP_WAIT_S = 0.5  # how long Stop waits for the worker before the page reruns


# ------------------------------------------------------------------------------------------
# configuration <-> URL <-> widgets
# ------------------------------------------------------------------------------------------

def _init_from_url() -> None:
    """On a session's first run, the URL's query parameters fill the controls."""
    if st.session_state.get("cfg_initialised"):
        return
    params = st.query_params.to_dict()
    # A plain visit opens on the app's data set (registry.APP_DATASET); a link keeps its own.
    config, notices = RunConfig.from_query(params if params else {"dataset": APP_DATASET})
    _set_controls(config)
    if config.data_root:  # a folder on this machine, named by whoever wrote the link: used once confirmed
        st.session_state["cfg_linked_root"] = config.data_root
        st.session_state[KEY + "data_root"] = ""
    st.session_state["cfg_notices"] = notices
    st.session_state["cfg_initialised"] = True


def _use_linked_root() -> None:
    st.session_state[KEY + "data_root"] = st.session_state.pop("cfg_linked_root")


def _linked_root_prompt(sb) -> None:
    """The data folder a link names is shown, and used only after a click."""
    root = st.session_state.get("cfg_linked_root")
    if root:
        sb.warning(f"The link names the data folder `{root}` on this machine. Read data from it?",
                   icon=":material/folder_open:")
        sb.button("Use this data folder", key=KEY + "use_linked_root", on_click=_use_linked_root)


def _set_controls(config: RunConfig) -> None:
    """The controls show ``config``; a parameter its loss does not read keeps its given value (or
    the default), so a link to SimCLR followed by a switch to HCL shows β = 1, τ⁺ = 0.1, not the 0
    a loss without them is normalised to."""
    for name in FIELDS:
        value = config.given(name)
        st.session_state[KEY + name] = "" if value is None and FIELDS[name].type is str else value


def _download_control(sb, dataset: str, data_root: str | None) -> None:
    """A Download button with a progress bar when a downloadable data set's files are missing.

    Nothing is fetched before the click (HCL_DATA_MIRROR replaces the host, e.g. for a mirror).
    """
    from hcl_core.data.download import DownloadError, download, downloadable, needs_download
    from hcl_core.data.releases import RELEASES

    if not data_root or not downloadable(dataset) or not needs_download(dataset, data_root):
        return
    label = DATASETS[dataset].label
    sb.caption(f"The {label} files are not in `{data_root}`.")
    if sb.button(f"Download {label} ({RELEASES[dataset].download_bytes / 1e6:,.0f} MB)", key=KEY + "download",
                 icon=":material/download:",
                 help="Fetches the published files, verifies their checksums and puts them in the data folder; "
                      "nothing is fetched before this click."):
        bar = sb.progress(0.0, text="connecting")
        try:
            download(dataset, data_root, progress=lambda p: bar.progress(p.fraction or 0.0, text=p.describe()))
        except (DownloadError, ValueError, OSError) as e:
            sb.error(str(e))
        else:
            bar.progress(1.0, text=f"{label}: downloaded and verified")


#: How the data-set-specific fields are drawn: label and, for sliders, (low, high, step).
_OPTION_CONTROLS = {
    "synthetic_overlap": ("Class overlap", (0.0, 1.0, 0.05)),
    "twins_gap": ("Twin gap", (0.0, 2.0, 0.05)),
    "twins_classes": ("Classes", None),
    "image_size": ("Image size (px)", None),
    "unlabeled": ("Also train on the unlabelled images", None),
}


def _dataset_changed() -> None:
    """A new data set brings its measured augmentation strength (the controls keep everything else)."""
    st.session_state[KEY + "aug_strength"] = DATASETS[st.session_state[KEY + "dataset"]].default_aug_strength


def _controls() -> tuple[RunConfig | None, str | None]:
    """The sidebar; returns the config, or None and the message of the field that is wrong."""
    keep_across_pages(*(KEY + name for name in FIELDS))  # also those the chosen loss hides
    sb = st.sidebar
    sb.header("Run configuration")
    dataset = field_control(sb, "dataset", "Data set", format_func=lambda n: DATASETS[n].label,
                            on_change=_dataset_changed)
    if DATASETS[dataset].shows_best:
        sb.caption(f"Shows best: {DATASETS[dataset].shows_best}")
    if DATASETS[dataset].needs_root:
        _linked_root_prompt(sb)
        sb.text_input("Data folder", key=KEY + "data_root", help=field_help("data_root"),
                      placeholder="/path/to/data")
        _download_control(sb, dataset, st.session_state.get(KEY + "data_root") or None)
    for option in DATASETS[dataset].options:  # the controls only this data set reads
        label, slider = _OPTION_CONTROLS[option]
        field_control(sb, option, label, slider=slider)
    loss = field_control(sb, "loss", "Loss", format_func=lambda n: LOSSES[n].label,
                         help_extra="The formula is shown above the charts.")
    spec = LOSSES[loss]
    if spec.reads("beta"):
        field_control(sb, "beta", "Hardness β", slider=(0.0, 20.0, 0.1),
                      help_extra="β multiplies s = cos/τ, as in the published code.")
    field_control(sb, "tau", "Temperature τ", slider=(0.05, 2.0, 0.05))
    if spec.reads("tau_plus"):
        field_control(sb, "tau_plus", "Class prior τ⁺", slider=(0.0, 0.5, 0.01))
    hidden = [p for p in ("beta", "tau_plus") if not spec.reads(p)]
    if hidden:
        sb.caption(f"{spec.short} does not use " + " or ".join({"beta": "β", "tau_plus": "τ⁺"}[p] for p in hidden)
                   + ".")
    field_control(sb, "encoder", "Encoder")
    field_control(sb, "batch_size", "Batch size", steps=BATCH_SIZES)
    field_control(sb, "epochs", "Epochs", step=5)
    field_control(sb, "lr", "Learning rate", steps=LEARNING_RATES, format_func=lambda v: f"{v:g}")
    measured = DATASETS[dataset].view_strength
    field_control(sb, "aug_strength", "Augmentation strength", slider=(0.0, 2.0, 0.1),
                  help_extra=f"On {dataset}, views keep their class (95 % of a clean classifier's accuracy) up to "
                             f"{measured:g}, the default (docs/PROTOCOL.md; `python -m hcl_core views` measures it)."
                  if measured is not None else f"Not measured on {dataset}: the default is 1.0 "
                                               "(`python -m hcl_core views` measures it).")
    field_control(sb, "seed", "Seed")
    field_control(sb, "device", "Device")
    with sb.expander("Advanced"):
        field_control(st, "snapshot_every", "Evaluate every K epochs")
        if spec.detachable:
            field_control(st, "detach_weights", "Detach hardness weights")
        field_control(st, "feature_dim", "Projection size")
        field_control(st, "hidden_dim", "Hidden width")
        field_control(st, "weight_decay", "Weight decay", step=1e-6)
        field_control(st, "eval_size", "Test samples embedded")
        field_control(st, "max_train", "Training samples (empty = all)", step=100)
        field_control(st, "threads", "CPU threads (0 = default)")
        field_control(st, "name", "Run name")
    values = {name: st.session_state.get(KEY + name) for name in FIELDS}
    try:
        return RunConfig(**values), None
    except ConfigError as e:
        return None, str(e)


# ------------------------------------------------------------------------------------------
# the live view (a fragment: it reruns alone, never the whole page)
# ------------------------------------------------------------------------------------------

def _view_of_run(run) -> JobState:
    """A stored run rendered like a live job: its history (cached while its log is unchanged)."""
    return JobState.of_run(run, run_history(run))


def _status_line(s: JobState) -> str:
    c = s.config
    where = f"epoch {s.epoch}/{c.epochs} · step {s.step}/{s.total_steps or '?'}"
    speed = f" · {s.steps_per_s:.0f} steps/s" if s.steps_per_s else ""
    if s.active and s.paused:
        return f"Paused: {where} (Step trains one more step, Resume goes on)"
    return {"starting": "Starting the worker…", "stopping": "Stopping…"}.get(s.state, f"{s.state.capitalize()}: "
                                                                                  f"{where}{speed}")


@st.cache_resource(max_entries=16, show_spinner=False)
def _evaluation_figures(run_key: str, n_evals: int, loss: str, has_baseline: bool, raw_name: str, *,
                        _evals: list, _baseline: dict) -> tuple:
    """The probe, geometry and clamp charts, each as ``(figure, markup)`` (None where the run has
    no such chart); they change only when an evaluation arrives.

    Built once per evaluation instead of at every live refresh: the server CPU each build costs
    comes out of the training on a small machine. Nothing mutates them afterwards. The markup
    (:func:`~hcl_core.plots.markup.figure_html`) is what the page draws unless the reader asked
    for interactive charts; the figure is what that toggle and the downloads use.
    """
    clamp = clamp_figure(_evals) if _evals and LOSSES[loss].clamp else None
    figures = (probe_figure(_evals, _baseline, raw_name=raw_name), geometry_figure(_evals) if _evals else None,
               clamp)
    return tuple((f, figure_html(f)) if f is not None else None for f in figures)


@st.cache_resource(max_entries=16, show_spinner=False)
def _ended_loss_chart(run_key: str, n_steps: int, label: str, color: str, *, _steps: tuple, _losses: tuple) -> tuple:
    """An ended run's loss chart as ``(figure, markup)``, built once per run rather than at every
    rerun of the page (a tenth of a Train page switch's script time, profiled). Nothing mutates
    them afterwards."""
    return (loss_figure([Series(label, _steps, _losses, color)]),
            live_loss_html(_steps, _losses, label=label, color=color))


def _render(s: JobState) -> None:
    st.progress(s.progress if s.state != "finished" else 1.0, text=_status_line(s))
    if s.state == "failed":
        st.error(f"The run failed: {s.message}")
    elif s.state == "stopped":
        st.warning(s.message or "Stopped.")
    last = s.evals[-1] if s.evals else {}
    raw = (s.baseline or {}).get("raw", {})
    raw_name = DATASETS[s.config.dataset].raw_name
    m = st.columns(4)
    m[0].metric("Loss (last step)", f"{s.steps[-1][1]:.4f}" if s.steps else "–")
    for col, key, label in ((m[1], "few_shot_probe_acc", "Few-shot probe"), (m[2], "knn_acc", "kNN accuracy"),
                            (m[3], "linear_probe_acc", "Linear probe")):
        if key in last:
            col.metric(f"{label} (epoch {last['epoch']})", f"{last[key]:.3f}",
                       delta=f"{last[key] - raw[key]:+.3f} vs {raw_name}" if key in raw else None)
        else:
            col.metric(label, "–")
    color = LOSS_COLORS.get(s.config.loss, "#0072B2")
    steps, losses = zip(*s.steps, strict=True) if s.steps else ((), ())
    # The charts are plain markup (hcl_core.plots.live and .markup) unless the reader turns on
    # interactive ones for an ended run: a live run's change at every refresh, and redrawing Plotly
    # figures that often costs the training worker CPU; an ended run's show at once (the page
    # opens on one) and look the same as while it trained.
    interactive = not s.active and interactive_charts()
    probe, geometry, clamp = _evaluation_figures(s.run_dir or f"job {s.job_id}", len(s.evals), s.config.loss,
                                                 bool(s.baseline), raw_name, _evals=s.evals, _baseline=s.baseline)
    label = s.config.short_name()
    loss = ((None, live_loss_html(steps, losses, label=label, color=color)) if s.active else
            _ended_loss_chart(s.run_dir or f"job {s.job_id}", len(steps), label, color, _steps=steps, _losses=losses))
    charts = [("loss_curve", loss), ("probe_curve", probe)]
    if s.evals:
        charts += [("geometry", geometry)] + ([("clamp", clamp)] if clamp is not None else [])
    for (key, (fig, markup)), col in zip(charts, st.columns(2) * 2, strict=False):
        with col:
            # PNG/SVG of an ended run only: a live chart changes every refresh.
            chart(fig, key=key, name=f"{label}-{key}", markup=markup, interactive=interactive,
                  downloads=not s.active, width="stretch")
    if s.state == "finished" and s.run_dir:
        st.success(f"Finished in {s.summary.get('seconds', 0):.1f} s. Open **Embeddings** to watch the "
                   "clusters form, **Negatives** to see where the weight goes.")


def _refresh_interval(s: JobState) -> float | None:
    """Seconds between live updates: quick until the first loss point, then slow, none once ended.

    Quick again while a stop is under way, so the end shows as soon as the worker is gone.
    Every refresh costs the server and the browser CPU that the training worker then lacks
    (BENCHMARKS.md: how much of the bare loop's speed each interval keeps); the
    quick start polls five times a second until the first point, which the worker sends at once.
    """
    if not s.active:
        return None
    return FIRST_POINT_REFRESH_S if not s.steps or s.state == "stopping" else LIVE_REFRESH_S


def _live(job_id: int) -> None:
    job = job_manager().get(job_id)
    if job is None:
        return
    s = job.view()
    _render(s)
    # A fragment keeps the interval it was drawn with: when the interval should change (first
    # point shown, job ended), rerun the whole page once, which also redraws the buttons.
    if _refresh_interval(s) != st.session_state.get("live_interval"):
        st.rerun(scope="app")


# ------------------------------------------------------------------------------------------
# button callbacks: they run before the script draws anything, so the buttons below show
# the new state (Start disabled, Stop enabled) in the very rerun the click caused
# ------------------------------------------------------------------------------------------

def _start(config: RunConfig) -> None:
    try:
        job = job_manager().start(config)
        st.session_state["shown_job"] = job.id
        st.session_state.pop("shown_run", None)
        st.session_state.pop("dismissed", None)
    except JobLimitError as e:
        st.session_state["start_error"] = f"{e}, or use **Compare** below, which queues runs."


def _stop(job_id: int) -> None:
    running = job_manager().get(job_id)
    if running is not None:
        # The worker usually ends within a step: wait a little so this click's rerun shows the end;
        # if it takes longer, the rerun shows "Stopping…" and the quick refresh catches the end
        # (the 1 s deadline is kept on a thread either way).
        running.stop(timeout=1.0, wait=False)
        running.wait(STOP_WAIT_S)


def _pause_or_resume(job_id: int) -> None:
    job = job_manager().get(job_id)
    if job is not None:
        job.resume() if job.view().paused else job.pause()


def _step(job_id: int) -> None:
    job = job_manager().get(job_id)
    if job is not None:
        job.step()


def _show(job_id: int) -> None:
    st.session_state["shown_job"] = job_id
    st.session_state.pop("shown_run", None)
    st.session_state.pop("dismissed", None)


def _reset() -> None:
    _set_controls(RunConfig(dataset=APP_DATASET))
    st.query_params.clear()
    st.session_state.pop("shown_job", None)
    st.session_state.pop("shown_run", None)
    st.session_state["dismissed"] = True


# ------------------------------------------------------------------------------------------
# which run the page shows: this tab's job, else one of the controls' configuration
# ------------------------------------------------------------------------------------------

def _shown(config: RunConfig | None, linked: bool):
    """``(job, None)``, ``(None, stored run)`` or ``(None, None)``.

    The job this tab started (or chose) first; else the newest job, then the newest finished
    stored run, of exactly the controls' configuration (so a link or a reloaded tab shows its own
    configuration's run, never merely the last one trained); else, on a plain first visit only,
    the newest run of any configuration, flagged as different.
    """
    manager = job_manager()
    if st.session_state.get("dismissed"):
        return None, None
    job = manager.get(st.session_state.get("shown_job", -1))
    if job is not None:
        return job, None
    if st.session_state.get("shown_run"):  # the stored run this tab shows stays, flagged if the controls change
        try:
            return None, load_run(st.session_state["shown_run"])
        except RunFileError:
            st.session_state.pop("shown_run")
    if config is not None:
        same = [j for j in manager.jobs() if j.config == config]
        if same:
            same.sort(key=lambda j: (j.active, j.id))
            st.session_state["shown_job"] = same[-1].id
            return same[-1], None
        stored = [r for r in all_runs() if r.state == "finished" and r.config == config]
        if stored:
            st.session_state["shown_run"] = str(stored[0].path)
            return None, reload_run(stored[0])
    if linked:
        return None, None
    latest = manager.latest()
    if latest is not None:
        return latest, None
    finished = [r for r in all_runs() if r.state == "finished"]
    if not finished:
        return None, None
    st.session_state["shown_run"] = str(finished[0].path)
    return None, reload_run(finished[0])


def _title(shown: RunConfig, run_id: str | None, controls: RunConfig | None) -> None:
    label = legend_labels([shown])[0] + f" · seed {shown.seed} · {shown.dataset} · {shown.encoder}"
    st.subheader(f"Run: {label}")
    if run_id:
        st.caption(f"Run id `{run_id}`, saved in the models folder.")
    if controls is not None and (diff := differences(shown, controls)):
        listed = ", ".join(f"{name} ({a} here, {b} in the controls)" for name, a, b in diff)
        st.warning(f"These charts show a run that differs from the controls on the left: {listed}. "
                   "Press **Start** to train the controls' configuration.", icon=":material/compare_arrows:")


def _running_jobs(shown_id: int | None) -> None:
    """Every other run training in this app, from any tab: show or stop each (the shown one has its buttons)."""
    active = [j for j in job_manager().jobs() if j.active and j.id != shown_id]
    waiting = job_queue().waiting()
    if not active and not waiting:
        return
    with st.expander(f"Also training now: {len(active)} run(s)" + (f", {len(waiting)} queued" if waiting else ""),
                     expanded=len(active) > 1 or bool(waiting)):
        labels = legend_labels([j.config for j in active]) if active else []
        for job, label in zip(active, labels, strict=True):
            s = job.view()
            c1, c2, c3 = st.columns([5, 1, 1])
            c1.progress(s.progress, text=f"{label}: {_status_line(s)}")
            c2.button("Show", key=f"show_{job.id}", on_click=_show, args=(job.id,))
            c3.button("Stop", icon=":material/stop:", key=f"stop_{job.id}", on_click=_stop, args=(job.id,))
        for t in waiting:
            st.caption(f"Queued: {legend_labels([t.config])[0]} (starts when a slot frees)")


# ------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------

# Opened through a link (for the whole session): then only a run of the linked configuration is shown.
linked = st.session_state.setdefault("cfg_linked", bool(st.query_params.to_dict()))
_init_from_url()
config, error = _controls()
manager = job_manager()
job, stored = _shown(config, linked)
active = job is not None and job.active

st.title("Hardness Explorer")
glossary()
for notice in st.session_state.pop("cfg_notices", []):
    st.warning(notice)
if error:
    st.sidebar.error(error)
else:
    st.query_params.from_dict(config.to_query())

chosen_loss = config.loss if config else st.session_state[KEY + "loss"]
st.markdown(f"**{LOSSES[chosen_loss].label}** — {EXPLANATIONS[chosen_loss]}")
st.latex(FORMULAS[chosen_loss])

training_this = config is not None and any(j.active and j.config == config for j in manager.jobs())
paused = active and job.view().paused
shown_id = job.id if job else 0
b1, b2, b3, b4, b5, info = st.columns([1, 1, 1, 1, 1, 3])
b1.button("Start", icon=":material/play_arrow:", type="primary", disabled=bool(error) or training_this,
          width="stretch", on_click=_start, args=(config,),
          help="Train the configuration on the left in the background; the page stays responsive. "
               f"Up to {manager.max_active} runs train at once.")
b2.button("Resume" if paused else "Pause", icon=":material/play_arrow:" if paused else ":material/pause:",
          disabled=not active, width="stretch", on_click=_pause_or_resume, args=(shown_id,),
          help="Hold the run shown below between two steps, or let it go on.")
b3.button("Step", icon=":material/skip_next:", disabled=not active, width="stretch", on_click=_step,
          args=(shown_id,), help="Train exactly one more step (one batch), then hold: watch a single update.")
b4.button("Stop", icon=":material/stop:", disabled=not active, width="stretch", on_click=_stop, args=(shown_id,),
          help="Stops the run shown below within a second; everything trained so far is kept.")
b5.button("Reset", icon=":material/restart_alt:", width="stretch", on_click=_reset,
          help="Back to the default configuration; every run stays on disk.")
if "start_error" in st.session_state:
    st.error(st.session_state.pop("start_error"))
info.caption(f"Link to this configuration: copy the address bar. Runs are saved in `{manager.root}/`.")
_running_jobs(job.id if job else None)

with st.expander("Compare losses in one click", expanded="comparison" in st.session_state,
                 icon=":material/stacked_line_chart:"):
    comparison_form(config)
    if "comparison" in st.session_state:
        live_comparison(st.session_state["comparison"])

if job is not None:
    _title(job.config, None, config)
    interval = st.session_state["live_interval"] = _refresh_interval(job.view())
    st.fragment(run_every=interval)(_live)(job.id)
elif stored is not None:
    _title(stored.config, stored.run_id, config)
    _render(_view_of_run(stored))
elif linked or st.session_state.get("dismissed"):
    st.info("No run of this configuration yet: press **Start** to train it.")
else:
    st.info("Press **Start** to train the configuration on the left: on digits, 30 epochs take "
            "about ten seconds on a laptop CPU.")
