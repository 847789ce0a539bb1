/**
 * The diagnostic log and the progress line. Everything goes to stderr;
 * stdout is kept for results (and is the only output under `--json`).
 *
 * At a terminal lines are short and a progress line is redrawn in place.
 * Under a scheduler (no TTY) every line carries a UTC timestamp and a level,
 * and no progress line is drawn. Every line passes through `redact`, so a
 * token or signed address that slips into a message never reaches a log.
 */

export type Level = "error" | "warn" | "info" | "debug";
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

/** A byte counter shown while a person watches; a no-op otherwise. */
export interface Progress {
  start(label: string, totalBytes: number): void;
  advance(bytes: number): void;
  finish(): void;
}

export interface Sink {
  write(text: string): void;
  readonly isTerminal: boolean;
}

export const stderrSink: Sink = {
  write: (text) => {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) {
      off += Deno.stderr.writeSync(bytes.subarray(off));
    }
  },
  get isTerminal() {
    return Deno.stderr.isTerminal();
  },
};

const SECRET_PARAMS =
  /([?&;\s"']|^)(access_token|refresh_token|client_secret|code|device_code|secretKey|sign|token)=([^&\s"']+)/gi;
const SECRET_JSON =
  /"(access_token|refresh_token|client_secret|secretKey|session_secret|session_key|dlink)"\s*:\s*"[^"]*"/gi;

/** Removes tokens, secrets and signed address parts from a line of text. */
export function redact(text: string): string {
  return text
    .replace(SECRET_PARAMS, (_m, lead, key) => `${lead}${key}=[redacted]`)
    .replace(SECRET_JSON, (_m, key) => `"${key}":"[redacted]"`);
}

export interface LoggerOptions {
  level?: Level;
  sink?: Sink;
  now?: () => Date;
}

/** A logger writing plain lines, with timestamps when no person watches. */
export function createLogger(options: LoggerOptions = {}): Logger & {
  progress: Progress;
} {
  const sink = options.sink ?? stderrSink;
  const level = options.level ?? "info";
  const now = options.now ?? (() => new Date());
  const tty = sink.isTerminal;
  let progressShown = false;

  const clearProgress = () => {
    if (progressShown) {
      sink.write("\r\x1b[2K");
      progressShown = false;
    }
  };
  const line = (lv: Level, message: string) => {
    if (RANK[lv] > RANK[level]) return;
    const text = redact(message);
    clearProgress();
    if (tty) {
      const prefix = lv === "error"
        ? "error: "
        : lv === "warn"
        ? "warning: "
        : lv === "debug"
        ? "debug: "
        : "";
      sink.write(prefix + text + "\n");
    } else {
      const stamp = now().toISOString().replace(/\.\d+Z$/, "Z");
      sink.write(`${stamp} ${lv.toUpperCase().padEnd(5)} ${text}\n`);
    }
  };

  let label = "";
  let total = 0;
  let done = 0;
  let lastDraw = 0;
  const draw = (force: boolean) => {
    if (!tty) return;
    const t = Date.now();
    if (!force && t - lastDraw < 100) return;
    lastDraw = t;
    const pct = total > 0
      ? Math.min(100, Math.floor((done / total) * 100))
      : 100;
    const width = 24;
    const filled = Math.round((pct / 100) * width);
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    const name = label.length > 30 ? "…" + label.slice(-29) : label;
    sink.write(
      `\r\x1b[2K${name} [${bar}] ${pct}% ${formatBytes(done)}/${
        formatBytes(total)
      }`,
    );
    progressShown = true;
  };

  return {
    error: (m) => line("error", m),
    warn: (m) => line("warn", m),
    info: (m) => line("info", m),
    debug: (m) => line("debug", m),
    progress: {
      start(l, t) {
        label = l;
        total = t;
        done = 0;
        draw(true);
      },
      advance(b) {
        done += b;
        draw(false);
      },
      finish() {
        if (tty && progressShown) draw(true);
        clearProgress();
      },
    },
  };
}

/** A logger that keeps its lines, for tests. */
export function memoryLogger(): Logger & {
  lines: string[];
  progress: Progress;
} {
  const lines: string[] = [];
  const push = (lv: Level) => (m: string) => lines.push(`${lv} ${redact(m)}`);
  return {
    lines,
    error: push("error"),
    warn: push("warn"),
    info: push("info"),
    debug: push("debug"),
    progress: { start() {}, advance() {}, finish() {} },
  };
}

/** `1.5 MiB`, `320 KiB`, `12 B`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
