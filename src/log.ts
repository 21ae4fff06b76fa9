/**
 * Structured logging: JSON lines when stderr is not a TTY, readable lines when
 * it is. Kept tiny on purpose; one line per event, context as fields. A child
 * logger only records its fields; they are merged when a line is written, so
 * per-task children cost almost nothing when their level is off.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /** Whether lines of this level are written: lets a hot path skip building them. Absent: assume so. */
  enabled?(level: LogLevel): boolean;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}

interface Sink {
  level: number;
  json: boolean;
  write: (line: string) => void;
}

class StructuredLogger implements Logger {
  constructor(
    private readonly sink: Sink,
    private readonly fields: Record<string, unknown> | undefined,
    private readonly parent?: StructuredLogger,
  ) {}

  debug(msg: string, fields?: Record<string, unknown>): void {
    if (this.sink.level <= ORDER.debug) this.emit('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    if (this.sink.level <= ORDER.info) this.emit('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    if (this.sink.level <= ORDER.warn) this.emit('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    if (this.sink.level <= ORDER.error) this.emit('error', msg, fields);
  }
  enabled(level: LogLevel): boolean {
    return this.sink.level <= ORDER[level];
  }
  child(fields: Record<string, unknown>): Logger {
    return this.sink.level >= ORDER.silent ? this : new StructuredLogger(this.sink, fields, this);
  }

  private collect(into: Record<string, unknown>): void {
    this.parent?.collect(into);
    if (this.fields) Object.assign(into, this.fields);
  }

  private emit(level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>): void {
    const all: Record<string, unknown> = {};
    this.collect(all);
    if (fields) Object.assign(all, fields);
    for (const [k, v] of Object.entries(all)) if (v instanceof Error) all[k] = v.message;
    const time = new Date().toISOString();
    if (this.sink.json) {
      this.sink.write(JSON.stringify({ time, level, msg, ...all }));
      return;
    }
    const extra = Object.entries(all)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    this.sink.write(
      `${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? ` ${extra}` : ''}`,
    );
  }
}

export function createLogger(
  options: {
    level?: LogLevel;
    json?: boolean;
    write?: (line: string) => void;
    fields?: Record<string, unknown>;
  } = {},
): Logger {
  const sink: Sink = {
    level: ORDER[options.level ?? 'info'],
    json: options.json ?? !process.stderr.isTTY,
    write: options.write ?? ((line: string) => process.stderr.write(`${line}\n`)),
  };
  return new StructuredLogger(sink, options.fields);
}

export const silentLogger: Logger = createLogger({ level: 'silent' });
