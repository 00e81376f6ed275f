import { ETCD_WATCH_PROGRESS_AFTER_MS, ETCD_WATCH_STALE_AFTER_MS } from '../common/defaults.js';
import { WeftError } from '../common/errors.js';

export interface LivenessBounds {
  /** Silence after which etcd is asked for a progress notification. */
  readonly progressAfterMs: number;
  /** Silence after which the watch is stale. */
  readonly staleAfterMs: number;
}

export const DEFAULT_LIVENESS: LivenessBounds = { progressAfterMs: ETCD_WATCH_PROGRESS_AFTER_MS, staleAfterMs: ETCD_WATCH_STALE_AFTER_MS };

/** What the watch should do now: nothing, ask etcd for progress, or give the watch up. */
export type LivenessVerdict = 'wait' | 'ask' | 'stale';

/**
 * Decides when a watch has been silent too long. An idle watch carries
 * nothing, and a silent partition (packets dropped, no RST or FIN) looks the
 * same to the stream: so after `progressAfterMs` of silence the caller asks
 * etcd for a progress notification, which a reachable etcd answers at once;
 * a watch that shows no sign of life (an event, a progress notification, a
 * confirmation) for `staleAfterMs` is stale. Pure: the caller passes the clock.
 */
export class WatchLiveness {
  private lastHeard: number;
  private asked = false;

  constructor(
    private readonly bounds: LivenessBounds,
    now: number,
  ) {
    if (!(bounds.progressAfterMs > 0 && bounds.staleAfterMs > bounds.progressAfterMs)) {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `watch liveness: progressAfterMs (${bounds.progressAfterMs}) must be > 0 and below staleAfterMs (${bounds.staleAfterMs})`);
    }
    this.lastHeard = now;
  }

  /** Anything etcd sent on the stream: the watch is alive at `now`. */
  heard(now: number): void {
    this.lastHeard = Math.max(this.lastHeard, now);
    this.asked = false;
  }

  /** How long the watch has been silent at `now`. */
  silentMs(now: number): number {
    return Math.max(0, now - this.lastHeard);
  }

  /** The verdict at `now`; 'ask' is given once per silence (one progress request is enough: etcd answers it at once). */
  check(now: number): LivenessVerdict {
    const silent = this.silentMs(now);
    if (silent >= this.bounds.staleAfterMs) return 'stale';
    if (silent >= this.bounds.progressAfterMs && !this.asked) {
      this.asked = true;
      return 'ask';
    }
    return 'wait';
  }

  /** Milliseconds from `now` until check() can give another verdict than 'wait'. */
  nextCheckInMs(now: number): number {
    const silent = this.silentMs(now);
    const due = silent < this.bounds.progressAfterMs ? this.bounds.progressAfterMs : this.bounds.staleAfterMs;
    return Math.max(0, due - silent);
  }
}
