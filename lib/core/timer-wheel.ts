// One hashed timer wheel for every timeout in the gateway (head, connect,
// read/send, tunnel idle). A socket's activity never touches the wheel: the
// owner stores a timestamp (`wheel.now`, a coarse clock refreshed each tick),
// and when the entry comes due the owner's `onTimerExpired(now)` compares that
// timestamp with its timeout and either gives a later deadline (re-armed, no
// allocation) or lets the entry go. This is the scheme undici's fast timers and
// pingora-timeout use: no `setTimeout` per socket, no re-arm per chunk.
//
// Entries hang off the slots in intrusive doubly linked lists, so add and
// cancel are O(1). A deadline further than one revolution away simply stays in
// its slot until a pass finds it due (the "rounds" of a hashed wheel).

/** What a timer calls when due: return a later absolute deadline to stay armed, or 0 to stop. */
export interface TimerOwner {
  onTimerExpired(now: number): number;
}

export class WheelTimer {
  /** Absolute time (ms) at which the owner is asked again; 0 when not armed. */
  deadline = 0;
  next: WheelTimer | null = null;
  prev: WheelTimer | null = null;
  /** Slot index while armed (the head of that slot's list when `prev` is null). */
  slot = -1;
  readonly owner: TimerOwner;
  constructor(owner: TimerOwner) {
    this.owner = owner;
  }
  get isArmed(): boolean {
    return this.deadline !== 0;
  }
}

export interface TimerWheelOptions {
  /** Resolution in ms: a timer fires within one tick after its deadline. Default 100. */
  tickMs?: number;
  /** Number of slots, rounded up to a power of two. Default 1024 (102.4 s a revolution at 100 ms). */
  slots?: number;
  /** Clock source; default `Date.now`. */
  clock?: () => number;
  /** Drive the wheel with an unref'd interval while it holds entries. Default true; tests pass false and call `advance()`. */
  autoStart?: boolean;
}

export class TimerWheel {
  readonly tickMs: number;
  /** Coarse current time, refreshed on every tick: cheap enough to stamp on every chunk. */
  now: number;
  #slots: Array<WheelTimer | null>;
  #mask: number;
  #lastTick: number;
  #size = 0;
  #clock: () => number;
  #autoStart: boolean;
  #interval: NodeJS.Timeout | null = null;

  constructor(options: TimerWheelOptions = {}) {
    this.tickMs = Math.max(1, Math.floor(options.tickMs ?? 100));
    let slots = 1;
    while (slots < (options.slots ?? 1024)) slots <<= 1;
    this.#slots = new Array(slots).fill(null);
    this.#mask = slots - 1;
    this.#clock = options.clock ?? Date.now;
    this.#autoStart = options.autoStart ?? true;
    this.now = this.#clock();
    this.#lastTick = Math.floor(this.now / this.tickMs);
  }

  get size(): number {
    return this.#size;
  }

  /** Arm `timer` to fire `timeoutMs` from now (replacing any earlier deadline). A timeout <= 0 disarms it. */
  arm(timer: WheelTimer, timeoutMs: number): void {
    if (timeoutMs <= 0 || !Number.isFinite(timeoutMs)) {
      this.cancel(timer);
      return;
    }
    if (this.#interval === null && this.#autoStart) this.#start();
    this.schedule(timer, this.now + timeoutMs);
  }

  /** Arm `timer` for an absolute deadline in ms. */
  schedule(timer: WheelTimer, deadline: number): void {
    if (timer.deadline !== 0) this.#unlink(timer);
    timer.deadline = deadline;
    let tick = Math.ceil(deadline / this.tickMs);
    if (tick <= this.#lastTick) tick = this.#lastTick + 1;
    const slot = tick & this.#mask;
    const head = this.#slots[slot];
    timer.slot = slot;
    timer.prev = null;
    timer.next = head;
    if (head !== null) head.prev = timer;
    this.#slots[slot] = timer;
    this.#size++;
  }

  cancel(timer: WheelTimer): void {
    if (timer.deadline === 0) return;
    this.#unlink(timer);
    timer.deadline = 0;
  }

  /** Fire every timer whose deadline is <= `now`, in deadline order per slot pass. */
  advance(now: number = this.#clock()): void {
    this.now = now;
    const target = Math.floor(now / this.tickMs);
    // After a stall longer than a revolution, one pass over every slot is enough:
    // each pass fires whatever is due regardless of which round it was filed in.
    let from = this.#lastTick + 1;
    if (target - from >= this.#slots.length) from = target - this.#slots.length + 1;
    for (let tick = from; tick <= target; tick++) {
      this.#lastTick = tick;
      this.#fireSlot(tick & this.#mask, now);
    }
    this.#lastTick = target;
  }

  /** Stop the interval and forget every entry (gateway shutdown). */
  clear(): void {
    for (let i = 0; i < this.#slots.length; i++) {
      let t = this.#slots[i];
      while (t !== null) {
        const next = t.next;
        t.deadline = 0;
        t.next = t.prev = null;
        t = next;
      }
      this.#slots[i] = null;
    }
    this.#size = 0;
    this.#stop();
  }

  #fireSlot(slot: number, now: number): void {
    // Detach the due entries first, so owners that re-arm (into this very slot,
    // a revolution later) or cancel others while we run do not disturb the walk.
    let due: WheelTimer | null = null;
    let t = this.#slots[slot];
    while (t !== null) {
      const next: WheelTimer | null = t.next;
      if (t.deadline <= now) {
        this.#unlink(t);
        t.next = due;
        due = t;
      }
      t = next;
    }
    while (due !== null) {
      const timer: WheelTimer = due;
      due = timer.next;
      timer.next = null;
      timer.deadline = 0;
      const again = timer.owner.onTimerExpired(now);
      if (again > 0 && timer.deadline === 0) this.schedule(timer, again);
    }
  }

  #unlink(timer: WheelTimer): void {
    if (timer.prev !== null) timer.prev.next = timer.next;
    else this.#slots[timer.slot] = timer.next;
    if (timer.next !== null) timer.next.prev = timer.prev;
    timer.next = timer.prev = null;
    timer.slot = -1;
    this.#size--;
  }

  #start(): void {
    this.now = this.#clock();
    this.#lastTick = Math.max(this.#lastTick, Math.floor(this.now / this.tickMs));
    this.#interval = setInterval(() => {
      this.advance();
      if (this.#size === 0) this.#stop();
    }, this.tickMs);
    this.#interval.unref();
  }

  #stop(): void {
    if (this.#interval !== null) {
      clearInterval(this.#interval);
      this.#interval = null;
    }
  }
}
