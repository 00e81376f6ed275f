import winston from 'winston';

export type Logger = winston.Logger;

export interface LogOptions {
  level?: string;
  format?: 'json' | 'text';
}

/** The process logger: one line per event that matters, JSON or text, to stderr. */
export function createLogger(options: LogOptions = {}): Logger {
  const format =
    options.format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.combine(
          winston.format.timestamp(),
          winston.format.printf(({ timestamp, level, message, ...meta }) => {
            const extra = Object.keys(meta).length > 0 ? ' ' + JSON.stringify(meta) : '';
            return `${String(timestamp)} ${level} ${String(message)}${extra}`;
          }),
        );
  return winston.createLogger({
    level: options.level ?? 'info',
    format,
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] })],
  });
}

/** A logger that drops everything; the default for library objects in tests. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
