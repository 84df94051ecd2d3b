"""Synthetic physiology for one wearer: a latent state and ECG, EEG and wrist-accelerometer streams.

Everything is seeded and generated in fixed one-second blocks of *device time* (sample index
divided by the nominal rate), so the signal does not depend on how a caller cuts it into chunks:
:meth:`StreamGenerator.take` slices the next ``n`` samples out of those blocks. State (beat
schedule, filter memories, oscillator phases) is carried from block to block.

Models (our own code, after the published ideas):

- **Latent state** (:class:`LatentState`): ``rest`` / ``stress`` / ``exercise`` switching as a
  semi-Markov chain with whole-second dwell times (15-40 s by default). The body follows the
  state with lags (a fast ~2 s one for movement and EEG, a slower ~5 s one for heart rate) and
  slow per-wearer drifts (Ornstein-Uhlenbeck), so windows near a switch are ambiguous.
- **ECG**: each beat is a sum of five Gaussian waves (P, Q, R, S, T) placed around the R peak,
  the dynamical-model idea of McSharry et al. (2003), IEEE TBME 50(3):289-294, written here as
  a direct sum over beats rather than an ODE. QT-like spacing scales with sqrt(RR) (Bazett).
  Heart rate = state level + respiratory sinus arrhythmia + a 0.1 Hz (LF, Mayer-wave) component
  + AR(1) beat noise; RSA shrinks under stress and exercise (vagal withdrawal).
- **EEG**: spatially correlated 1/f background (a 3-pole pinking filter, after the design
  published by J. O. Smith / R. Bristow-Johnson) plus resonator-filtered alpha (occipital),
  theta (frontal) and beta (fronto-central) sources and high-frequency muscle artefact (EMG);
  rest → strong alpha; stress → alpha down, theta and beta up; exercise → EMG.
- **Wrist accelerometer**: gravity through a slowly wandering wrist orientation, arm swing and
  step bounce at the wearer's cadence during exercise (walking ~1.8-2.0 Hz, running ~2.5-2.8 Hz,
  or cycling with little wrist motion), small fidgeting (slightly more under stress), sensor
  noise; no tremor at rest.

Each wearer draws its own :class:`Traits` (baseline heart rate, alpha power, exercise type...),
so each modality alone separates the states imperfectly while together they separate well.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from streamfuse.config import ModalitySpec
from streamfuse.errors import ConfigError

log = logging.getLogger("streamfuse.simulators.physiology")

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

STATES: tuple[str, ...] = ("rest", "stress", "exercise")
REST, STRESS, EXERCISE = 0, 1, 2

TAU_FAST_S = 2.0
TAU_SLOW_S = 5.0

# --------------------------------------------------------------------------------------------
# Per-wearer traits


@dataclass(frozen=True, slots=True)
class Traits:
    """What makes one simulated wearer different from another (all drawn from its seed)."""

    hr_rest: float  # bpm
    hr_stress: float  # bpm added under stress
    hr_exercise: float  # bpm added under exercise
    rsa_bpm: float  # respiratory sinus arrhythmia amplitude at rest
    lf_bpm: float  # 0.1 Hz component amplitude
    resp_hz: float  # breathing rate at rest
    r_amp_mv: float  # R-wave amplitude
    eeg_bg_uv: float  # background RMS
    alpha_uv: float  # alpha RMS at O1/O2 at rest
    alpha_hz: float
    theta_uv: float
    beta_uv: float
    emg_uv: float  # muscle artefact RMS during exercise
    stress_alpha: float  # alpha factor under stress (< 1)
    activity: str  # "walk", "run" or "cycle"
    cadence_hz: float  # step (or pedal) frequency during exercise
    bounce_g: float  # step bounce amplitude
    swing_rad: float  # arm swing amplitude (pitch)
    fidget_g: float  # fidgeting amplitude at rest
    pitch0: float  # resting wrist orientation (rad)
    roll0: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Traits:
        """Draw a plausible wearer; the population is wide on purpose (overlapping states)."""
        u = rng.uniform
        activity = str(rng.choice(["walk", "run", "cycle"], p=[0.4, 0.35, 0.25]))
        if activity == "walk":
            cadence, bounce, swing = u(1.75, 2.05), u(0.15, 0.35), u(0.25, 0.45)
        elif activity == "run":
            cadence, bounce, swing = u(2.45, 2.85), u(0.5, 1.0), u(0.45, 0.7)
        else:
            cadence, bounce, swing = u(1.2, 1.5), u(0.02, 0.06), u(0.0, 0.05)
        return cls(
            hr_rest=float(np.clip(rng.normal(68.0, 5.0), 52.0, 85.0)),
            hr_stress=u(10.0, 22.0),
            hr_exercise=u(28.0, 50.0),
            rsa_bpm=u(2.0, 6.0),
            lf_bpm=u(1.0, 3.0),
            resp_hz=u(0.2, 0.3),
            r_amp_mv=u(0.8, 1.6),
            eeg_bg_uv=u(6.0, 10.0),
            alpha_uv=u(6.0, 22.0),
            alpha_hz=u(9.0, 11.5),
            theta_uv=u(2.5, 5.0),
            beta_uv=u(1.5, 3.5),
            emg_uv=u(3.0, 14.0),
            stress_alpha=u(0.45, 0.85),
            activity=activity,
            cadence_hz=cadence,
            bounce_g=bounce,
            swing_rad=swing,
            fidget_g=u(0.005, 0.02),
            pitch0=u(-0.6, 0.6),
            roll0=u(-0.6, 0.6),
        )


# --------------------------------------------------------------------------------------------
# Latent state and the slow body parameters it drives

# Rows of the parameter vector computed once per second (linear in the lagged state).
P_HR, P_RSA, P_RESP, P_ALPHA, P_THETA, P_BETA, P_EMG, P_MOVE, P_FIDGET, P_ECG_NOISE = range(10)
N_PARAMS = 10


class LatentState:
    """The wearer's hidden state per whole second of device time, and the body's response.

    Parameters
    ----------
    traits
        The wearer.
    rng
        Its own random stream (state switches and slow drifts).
    dwell_s
        ``(min, max)`` whole-second dwell time in a state, drawn uniformly.
    schedule
        Optional fixed timeline ``[(state, seconds), ...]`` (repeated when it runs out), for
        tests and scripted demos; the random chain is used when it is None.
    """

    def __init__(
        self,
        traits: Traits,
        rng: np.random.Generator,
        dwell_s: tuple[float, float] = (15.0, 40.0),
        schedule: Sequence[tuple[str, float]] | None = None,
    ) -> None:
        lo, hi = int(math.ceil(dwell_s[0])), int(math.floor(dwell_s[1]))
        if lo < 1 or hi < lo:
            raise ConfigError(f"dwell_s must be (min, max) with 1 <= min <= max, got {dwell_s!r}")
        self.traits = traits
        self._rng = rng
        self._dwell = (lo, hi)
        self._schedule: list[tuple[int, int]] | None = None
        if schedule is not None:
            sched = []
            for name, seconds in schedule:
                if name not in STATES:
                    raise ConfigError(f"unknown state {name!r} in schedule; use one of {STATES}")
                if int(seconds) != seconds or seconds < 1:
                    raise ConfigError(f"schedule durations must be whole seconds, got {seconds}")
                sched.append((STATES.index(name), int(seconds)))
            if not sched:
                raise ConfigError("schedule is empty")
            self._schedule = sched
        t = traits
        # Parameter = M @ lagged one-hot state, per column state (rest, stress, exercise).
        self._m_fast = np.array(
            [
                [0.0, 0.0, 0.0],  # HR uses the slow lag
                [0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0],
                [t.alpha_uv, t.alpha_uv * t.stress_alpha, t.alpha_uv * 0.7],
                [t.theta_uv, t.theta_uv * 1.4, t.theta_uv * 1.1],
                [t.beta_uv, t.beta_uv * 1.5, t.beta_uv * 1.2],
                [0.15 * t.emg_uv, 0.4 * t.emg_uv, t.emg_uv],
                [0.0, 0.0, 1.0],
                [t.fidget_g, 1.5 * t.fidget_g, t.fidget_g],
                [0.01, 0.012, 0.03],
            ]
        )
        self._m_slow = np.zeros((N_PARAMS, 3))
        self._m_slow[P_HR] = [t.hr_rest, t.hr_rest + t.hr_stress, t.hr_rest + t.hr_exercise]
        self._m_slow[P_RSA] = [t.rsa_bpm, 0.45 * t.rsa_bpm, 0.3 * t.rsa_bpm]
        self._m_slow[P_RESP] = [t.resp_hz, 1.3 * t.resp_hz, 1.9 * t.resp_hz]
        self._a_fast = 1.0 - math.exp(-1.0 / TAU_FAST_S)
        self._a_slow = 1.0 - math.exp(-1.0 / TAU_SLOW_S)
        self._states: list[int] = []
        self._params: list[F64] = []
        self._resp_phase: list[float] = []  # breathing phase (cycles) at each whole second
        self._seg_left = 0
        self._seg_state = -1
        self._sched_i = -1
        self._fast = np.zeros(3)
        self._slow = np.zeros(3)
        self._drift = np.zeros(3)  # OU: HR (bpm), alpha (log), movement (log)

    def _next_segment(self) -> None:
        if self._schedule is not None:
            self._sched_i = (self._sched_i + 1) % len(self._schedule)
            self._seg_state, self._seg_left = self._schedule[self._sched_i]
            return
        if self._seg_state < 0:
            self._seg_state = int(self._rng.integers(3))
        else:
            self._seg_state = (self._seg_state + 1 + int(self._rng.integers(2))) % 3
        self._seg_left = int(self._rng.integers(self._dwell[0], self._dwell[1] + 1))

    def _extend(self, k: int) -> None:
        while len(self._states) <= k:
            if self._seg_left == 0:
                self._next_segment()
            self._seg_left -= 1
            s = self._seg_state
            one = np.zeros(3)
            one[s] = 1.0
            if not self._states:
                self._fast[:] = one
                self._slow[:] = one
            else:
                self._fast += (one - self._fast) * self._a_fast
                self._slow += (one - self._slow) * self._a_slow
            # Ornstein-Uhlenbeck drifts, time constant ~30 s.
            self._drift += -self._drift / 30.0 + self._rng.standard_normal(3) * np.array(
                [0.8, 0.04, 0.04]
            )
            p = self._m_fast @ self._fast + self._m_slow @ self._slow
            p[P_HR] += self._drift[0]
            p[P_ALPHA] *= math.exp(self._drift[1])
            p[P_MOVE] *= math.exp(self._drift[2])
            if self._resp_phase:
                prev = self._params[-1][P_RESP]
                self._resp_phase.append(self._resp_phase[-1] + 0.5 * (prev + p[P_RESP]))
            else:
                self._resp_phase.append(float(self._rng.uniform()))
            self._states.append(s)
            self._params.append(p)

    def state(self, k: int) -> int:
        """State index during whole device second ``k`` (``STATES[i]`` names it)."""
        self._extend(k)
        return self._states[k]

    def params(self, k: int) -> F64:
        """The body parameter vector at the start of device second ``k`` (do not modify)."""
        self._extend(k)
        return self._params[k]

    def param_at(self, row: int, u: float) -> float:
        """One parameter at device time ``u`` (linear between whole seconds)."""
        k = int(math.floor(u))
        self._extend(k + 1)
        a = self._params[k][row]
        return float(a + (self._params[k + 1][row] - a) * (u - k))

    def resp_phase_at(self, u: float) -> float:
        """Breathing phase in cycles at device time ``u`` (integral of the breathing rate)."""
        k = int(math.floor(u))
        self._extend(k + 1)
        f0 = self._params[k][P_RESP]
        f1 = self._params[k + 1][P_RESP]
        x = u - k
        return self._resp_phase[k] + f0 * x + 0.5 * (f1 - f0) * x * x

    def block_params(self, b: int) -> tuple[F64, F64]:
        """Parameter vectors at the start and end of second ``b`` (for in-block ramps)."""
        self._extend(b + 1)
        return self._params[b], self._params[b + 1]


# --------------------------------------------------------------------------------------------
# Stream generators


class StreamGenerator:
    """Base: cut an endless stream made of one-second blocks into chunks of any size.

    Subclasses implement :meth:`_block` (samples of device second ``b``, ``float32[fs, ch]``).
    """

    def __init__(self, spec: ModalitySpec, latent: LatentState, rng: np.random.Generator) -> None:
        n = spec.fs
        if n != int(n) or n < 1:
            raise ConfigError(
                f"modality {spec.name!r}: the simulator needs a whole number of samples per "
                f"second, got fs={spec.fs}"
            )
        self.spec = spec
        self.fs = float(spec.fs)
        self.n_block = int(n)
        self.latent = latent
        self.rng = rng
        self._block_i = 0
        self._buf: F32 = np.empty((0, spec.channels), np.float32)
        self._pos = 0
        self.position = 0  # samples handed out so far
        self._u = np.arange(self.n_block) / self.fs  # offsets within a block (s)
        self._ramp = self._u.copy()  # fraction of the second elapsed

    def _block(self, b: int) -> F32:
        raise NotImplementedError

    def take(self, n: int) -> F32:
        """The next ``n`` samples as a new C-contiguous ``float32[n, ch]`` array."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        left = self._buf.shape[0] - self._pos
        if n <= left:
            out = self._buf[self._pos : self._pos + n].copy()
            self._pos += n
        else:
            parts = [self._buf[self._pos :]]
            need = n - left
            while need > 0:
                self._buf = self._block(self._block_i)
                self._block_i += 1
                self._pos = min(need, self.n_block)
                parts.append(self._buf[: self._pos])
                need -= self._pos
            out = np.concatenate(parts)
        self.position += n
        return out


def _lerp(p0: F64, p1: F64, row: int, ramp: F64) -> F64:
    return p0[row] + (p1[row] - p0[row]) * ramp


class EcgGenerator(StreamGenerator):
    """Single-lead ECG in mV: Gaussian-sum P-QRS-T beats with heart-rate variability.

    With ``record=True`` the R-peak times (device seconds) and the target heart rate at each
    beat are kept in :attr:`r_peaks` and :attr:`hr_target` (for tests).
    """

    # P, Q, R, S, T: centre (s, relative to R, scaled by sqrt(RR) where flagged), width (s)
    _CENTRE = np.array([-0.17, -0.028, 0.0, 0.03, 0.27])
    _C_SCALE = np.array([False, False, False, False, True])
    _WIDTH = np.array([0.024, 0.011, 0.010, 0.012, 0.055])
    _W_SCALE = np.array([False, False, False, False, True])
    _AMP = np.array([0.12, -0.12, 1.0, -0.28, 0.3])  # R scaled by the wearer's r_amp

    def __init__(
        self,
        spec: ModalitySpec,
        latent: LatentState,
        rng: np.random.Generator,
        record: bool = False,
    ) -> None:
        super().__init__(spec, latent, rng)
        if spec.channels != 1:
            raise ConfigError(
                f"the ECG simulator makes 1 channel, spec {spec.name!r} wants {spec.channels}"
            )
        self.record = record
        self.r_peaks: list[float] = []
        self.hr_target: list[float] = []
        self._amp = self._AMP.copy()
        self._amp[2] *= latent.traits.r_amp_mv
        self._lf_phase = float(rng.uniform())
        # Beats still able to touch the next block: R time, RR, R-amplitude factor.
        self._beats_r: list[float] = []
        self._beats_rr: list[float] = []
        self._beats_a: list[float] = []
        self._next_r = float(rng.uniform(0.0, 0.8))
        self._ar = 0.0

    def _add_beat(self) -> None:
        r = self._next_r
        lat = self.latent
        t = lat.traits
        level = lat.param_at(P_HR, r)
        rsa = lat.param_at(P_RSA, r)
        resp = 2.0 * math.pi * lat.resp_phase_at(r)
        self._ar = 0.6 * self._ar + 0.9 * float(self.rng.standard_normal())
        hr = (
            level
            + rsa * math.sin(resp)
            + t.lf_bpm * math.sin(2.0 * math.pi * (0.1 * r + self._lf_phase))
            + self._ar
        )
        hr = min(max(hr, 35.0), 200.0)
        rr = 60.0 / hr
        self._beats_r.append(r)
        self._beats_rr.append(rr)
        self._beats_a.append(1.0 + 0.06 * math.sin(resp))
        if self.record:
            self.r_peaks.append(r)
            self.hr_target.append(level)
        self._next_r = r + rr

    def _block(self, b: int) -> F32:
        t0 = float(b)
        while self._next_r < t0 + 1.0 + 0.45:
            self._add_beat()
        # Drop beats that can no longer reach this block (support is about -0.3 .. +0.5 s).
        while self._beats_r and self._beats_r[0] < t0 - 0.7:
            del self._beats_r[0], self._beats_rr[0], self._beats_a[0]
        u = t0 + self._u
        r = np.asarray(self._beats_r)
        rr = np.asarray(self._beats_rr)
        s = np.sqrt(rr)[:, None]
        centre = np.where(self._C_SCALE, self._CENTRE * s, self._CENTRE)  # (nb, 5)
        width = np.where(self._W_SCALE, self._WIDTH * s, self._WIDTH)
        amp = self._amp * np.asarray(self._beats_a)[:, None]
        z = (u[None, None, :] - r[:, None, None] - centre[:, :, None]) / width[:, :, None]
        x = np.einsum("bk,bkn->n", amp, np.exp(-0.5 * z * z))
        p0, p1 = self.latent.block_params(b)
        k0 = self.latent.resp_phase_at(t0)
        f0, f1 = p0[P_RESP], p1[P_RESP]
        resp = k0 + f0 * self._ramp + 0.5 * (f1 - f0) * self._ramp * self._ramp
        x += 0.06 * np.sin(2.0 * math.pi * resp)  # baseline wander with breathing
        x += _lerp(p0, p1, P_ECG_NOISE, self._ramp) * self.rng.standard_normal(self.n_block)
        return x.astype(np.float32).reshape(-1, 1)


# 10-20 regions: weights of each source per region (Fp, F, C, P, T, O)
_REGION_W = {
    #        alpha theta beta  emg
    "Fp": (0.15, 0.6, 0.5, 1.0),
    "F": (0.25, 1.0, 0.9, 0.7),
    "C": (0.5, 0.6, 1.0, 0.3),
    "P": (0.8, 0.4, 0.7, 0.3),
    "T": (0.4, 0.4, 0.6, 1.0),
    "O": (1.0, 0.3, 0.5, 0.8),
}

# A 3-pole, 3-zero filter whose output is close to 1/f over most of the band.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _region(name: str) -> tuple[str, int]:
    """10-20 region letters and hemisphere (-1 left, 0 midline, +1 right) of a channel name."""
    letters = name.rstrip("0123456789zZ")
    tail = name[len(letters) :]
    if letters not in _REGION_W:
        raise ConfigError(
            f"EEG channel {name!r} is not a 10-20 name the simulator knows "
            f"(regions {sorted(_REGION_W)}, e.g. 'O1', 'Fz')"
        )
    if tail.isdigit():
        return letters, -1 if int(tail) % 2 else 1
    return letters, 0


def _resonator(f_hz: float, bw_hz: float, fs: float) -> tuple[F64, F64]:
    """A two-pole resonator scaled to unit output RMS for unit white input."""
    rho = math.exp(-math.pi * bw_hz / fs)
    w = 2.0 * math.pi * f_hz / fs
    c = math.cos(w)
    var = (1 + rho**2) / ((1 - rho**2) * ((1 + rho**2) ** 2 - 4 * rho**2 * c**2))
    return np.array([1.0 / math.sqrt(var)]), np.array([1.0, -2.0 * rho * c, rho * rho])


class EegGenerator(StreamGenerator):
    """Scalp EEG in µV: 1/f background, alpha/theta/beta rhythms, EMG during exercise."""

    def __init__(self, spec: ModalitySpec, latent: LatentState, rng: np.random.Generator) -> None:
        super().__init__(spec, latent, rng)
        ch = spec.channels
        t = latent.traits
        w = np.zeros((5, ch))  # sources: alpha L, alpha R, theta, beta, (emg weights)
        for j, name in enumerate(spec.channel_names):
            reg, side = _region(name)
            a, th, be, em = _REGION_W[reg]
            w[0, j] = a * (1.0 if side <= 0 else 0.35)
            w[1, j] = a * (1.0 if side >= 0 else 0.35)
            w[2, j], w[3, j], w[4, j] = th, be, em
        # Normalise alpha so the strongest channel has RMS ~ alpha_uv when both sources add.
        w[:2] /= max(np.sqrt((w[:2] ** 2).sum(axis=0)).max(), 1e-9)
        self._w_src = w[:4]
        self._w_emg = w[4]
        # Spatially correlated background: neighbours share a common component.
        mix = 0.6 * np.eye(ch) + 0.4 * rng.uniform(0.5, 1.0, (ch, ch)) / ch
        mix /= np.sqrt((mix**2).sum(axis=0))
        self._mix = mix * t.eeg_bg_uv / 0.0606  # pink filter output RMS ~0.06 for unit input
        self._pink_zi = np.zeros((3, ch))
        self._alpha = _resonator(t.alpha_hz, 1.8, self.fs)
        self._theta = _resonator(6.0, 2.5, self.fs)
        self._beta = _resonator(20.0, 8.0, self.fs)
        self._alpha_zi = np.zeros((2, 2))
        self._theta_zi = np.zeros((2, 1))
        self._beta_zi = np.zeros((2, 1))
        self._emg_last = np.zeros(ch)
        # Warm the filters so the first second is already stationary.
        for _ in range(2):
            self._sources(self.rng.standard_normal((self.n_block, 4 + ch)))

    def _sources(self, white: F64) -> tuple[F64, F64]:
        n = white.shape[0]
        bg, self._pink_zi = lfilter(_PINK_B, _PINK_A, white[:, 4:], axis=0, zi=self._pink_zi)
        src = np.empty((n, 4))
        src[:, :2], self._alpha_zi = lfilter(*self._alpha, white[:, :2], axis=0, zi=self._alpha_zi)
        src[:, 2:3], self._theta_zi = lfilter(
            *self._theta, white[:, 2:3], axis=0, zi=self._theta_zi
        )
        src[:, 3:4], self._beta_zi = lfilter(*self._beta, white[:, 3:4], axis=0, zi=self._beta_zi)
        return bg, src

    def _block(self, b: int) -> F32:
        n, ch = self.n_block, self.spec.channels
        white = self.rng.standard_normal((n, 4 + 2 * ch))
        bg, src = self._sources(white[:, : 4 + ch])
        p0, p1 = self.latent.block_params(b)
        gains = np.empty((n, 4))
        gains[:, 0] = _lerp(p0, p1, P_ALPHA, self._ramp)
        gains[:, 1] = gains[:, 0]
        gains[:, 2] = _lerp(p0, p1, P_THETA, self._ramp)
        gains[:, 3] = _lerp(p0, p1, P_BETA, self._ramp)
        # Alpha R shares most of its source with alpha L (the two hemispheres are coherent).
        src[:, 1] = 0.8 * src[:, 0] + 0.6 * src[:, 1]
        x = bg @ self._mix + (src * gains) @ self._w_src
        # EMG: differenced white noise (energy rising with frequency), per channel.
        e = white[:, 4 + ch :]
        emg = np.diff(np.vstack([self._emg_last, e]), axis=0) * (1.0 / math.sqrt(2.0))
        self._emg_last = e[-1]
        x += emg * (_lerp(p0, p1, P_EMG, self._ramp)[:, None] * self._w_emg)
        return x.astype(np.float32)


class AccGenerator(StreamGenerator):
    """Wrist accelerometer in g (x, y, z): gravity, orientation, arm swing, steps, fidgets."""

    def __init__(self, spec: ModalitySpec, latent: LatentState, rng: np.random.Generator) -> None:
        super().__init__(spec, latent, rng)
        if spec.channels != 3:
            raise ConfigError(
                f"the accelerometer simulator makes 3 axes, spec {spec.name!r} "
                f"wants {spec.channels}"
            )
        t = latent.traits
        self._phase = float(rng.uniform())  # step phase (cycles)
        self._pitch = t.pitch0
        self._roll = t.roll0
        self._cad = t.cadence_hz
        # Fidgeting: white noise low-passed below ~2 Hz (unit RMS output).
        self._lp_b, self._lp_a = _resonator(0.0, 2.0, self.fs)
        self._lp_zi = np.zeros((2, 3))

    def _block(self, b: int) -> F32:
        n = self.n_block
        t = self.latent.traits
        rng = self.rng
        white = rng.standard_normal((n, 6))
        walk = rng.standard_normal(3)
        p0, p1 = self.latent.block_params(b)
        move = _lerp(p0, p1, P_MOVE, self._ramp)
        # Slow wandering of the resting wrist orientation (posture), and of cadence.
        pitch_end = self._pitch + 0.03 * walk[0] - 0.02 * (self._pitch - t.pitch0)
        roll_end = self._roll + 0.03 * walk[1] - 0.02 * (self._roll - t.roll0)
        cad_end = self._cad + 0.01 * walk[2] - 0.1 * (self._cad - t.cadence_hz)
        pitch = self._pitch + (pitch_end - self._pitch) * self._ramp
        roll = self._roll + (roll_end - self._roll) * self._ramp
        cad = self._cad + (cad_end - self._cad) * self._ramp
        phase = self._phase + np.cumsum(cad) / self.fs
        self._pitch, self._roll, self._cad = pitch_end, roll_end, cad_end
        self._phase = float(phase[-1] % 1.0)
        ang = 2.0 * math.pi * phase
        pitch = pitch + t.swing_rad * move * np.sin(0.5 * ang)  # arm swings at half cadence
        sp, cp = np.sin(pitch), np.cos(pitch)
        sr, cr = np.sin(roll), np.cos(roll)
        g = np.empty((n, 3))
        g[:, 0] = sp
        g[:, 1] = -sr * cp
        g[:, 2] = cr * cp
        # Step bounce along gravity (sharp heel strikes: fundamental + harmonics).
        bounce = (
            t.bounce_g
            * move
            * (np.sin(ang) + 0.45 * np.sin(2 * ang + 0.7) + 0.2 * np.sin(3 * ang + 1.3))
        )
        x = g * (1.0 + bounce)[:, None]
        # Forward swing acceleration along the forearm axis.
        x[:, 0] += 0.5 * t.swing_rad * move * np.cos(0.5 * ang)
        fid, self._lp_zi = lfilter(self._lp_b, self._lp_a, white[:, :3], axis=0, zi=self._lp_zi)
        x += fid * _lerp(p0, p1, P_FIDGET, self._ramp)[:, None]
        x += 0.004 * white[:, 3:]
        return x.astype(np.float32)


GENERATORS: Mapping[str, type[StreamGenerator]] = {
    "ecg": EcgGenerator,
    "eeg": EegGenerator,
    "acc": AccGenerator,
}


def child_seed(ss: np.random.SeedSequence, name: str) -> np.random.SeedSequence:
    """A child of ``ss`` keyed by a name (stable across runs; ``ss`` is not modified)."""
    return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, zlib.crc32(name.encode())))


@dataclass(slots=True)
class Body:
    """One wearer: traits, latent state and one generator per modality."""

    traits: Traits
    latent: LatentState
    streams: dict[str, StreamGenerator]


def make_body(
    seed: np.random.SeedSequence | int,
    modalities: Mapping[str, ModalitySpec],
    dwell_s: tuple[float, float] = (15.0, 40.0),
    schedule: Sequence[tuple[str, float]] | None = None,
    record: bool = False,
) -> Body:
    """Build a wearer and its stream generators from one seed.

    Every part draws from its own child of ``seed`` (traits, latent state, each modality by
    name), so adding or removing a modality never changes the others' signals.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    traits = Traits.draw(np.random.default_rng(child_seed(ss, "traits")))
    latent = LatentState(traits, np.random.default_rng(child_seed(ss, "latent")), dwell_s, schedule)
    streams: dict[str, StreamGenerator] = {}
    for name, spec in modalities.items():
        cls = GENERATORS.get(name)
        if cls is None:
            raise ConfigError(
                f"no simulator for modality {name!r}; the simulator knows {sorted(GENERATORS)}"
            )
        rng = np.random.default_rng(child_seed(ss, "stream:" + name))
        if cls is EcgGenerator:
            streams[name] = EcgGenerator(spec, latent, rng, record=record)
        else:
            streams[name] = cls(spec, latent, rng)
    return Body(traits, latent, streams)
