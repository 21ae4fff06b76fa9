import type { Logger } from '../log.js';
import { concatBytes, LIMITS } from '../model/limits.js';
import { ClaimConflictError, NotFoundError } from '../protocol/errors.js';
import type { ClaimRef, Repository } from '../protocol/repository.js';
import { errorMessage } from './attempt.js';

export interface OutputStreamOptions {
  /** Longest a written byte waits before it is sent; default 250 ms. */
  flushMs?: number;
  /** Buffered bytes that send at once; default 64 KiB. */
  flushBytes?: number;
}

/** At most this much per appendOutput call: well inside request limits (etcd's 1.5 MiB). */
const MAX_PIECE_BYTES = 256 * 1024;
const encoder = new TextEncoder();

/**
 * One attempt's output on its way to the store while the runtime runs
 * (Repository.appendOutput): batched by time and size, sent in order, one call
 * at a time. A piece keeps its seq until the store took it, so a retry after a
 * lost reply is a repeat the store ignores. Once the claim is refused (run
 * cancelled, claim lapsed) the rest is dropped: the finish will be refused too.
 */
export class OutputStream {
  private seq = 0;
  /** Formed pieces not yet taken by the store, in order; a failed piece is retried as it is. */
  private readonly pieces: Uint8Array[] = [];
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  /** Bytes accepted from the runtime: past the cap they are dropped (the store cuts at the cap anyway). */
  private accepted = 0;
  private timer?: NodeJS.Timeout;
  private sending: Promise<void> = Promise.resolve();
  private closed = false;
  private refused = false;
  private readonly flushMs: number;
  private readonly flushBytes: number;

  constructor(
    private readonly repository: Repository,
    private readonly claim: ClaimRef,
    private readonly logger: Logger,
    options: OutputStreamOptions = {},
  ) {
    this.flushMs = options.flushMs ?? 250;
    this.flushBytes = options.flushBytes ?? 64 * 1024;
  }

  write(chunk: Uint8Array | string): void {
    if (this.closed || this.refused) return;
    let bytes = typeof chunk === 'string' ? encoder.encode(chunk) : chunk;
    // One byte past the cap is kept so the store marks the cut.
    const room = LIMITS.maxOutputBytes + 1 - this.accepted;
    if (room <= 0 || bytes.byteLength === 0) return;
    if (bytes.byteLength > room) bytes = bytes.subarray(0, room);
    // Copied: a runtime may reuse its buffer.
    this.buffered.push(bytes.slice());
    this.bufferedBytes += bytes.byteLength;
    this.accepted += bytes.byteLength;
    if (this.bufferedBytes >= this.flushBytes) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  /**
   * Stops taking writes and sends what is left. Resolves to the bytes the store
   * did not take (it could not be reached): the caller puts them in front of
   * the finish output, so nothing written is lost.
   */
  async close(): Promise<Uint8Array> {
    if (!this.closed) {
      this.closed = true;
      this.flush();
    }
    await this.sending;
    if (this.pieces.length > 0 && !this.refused) {
      this.flush(); // one more try for pieces a failed send left
      await this.sending;
    }
    return this.refused ? new Uint8Array() : concatBytes(this.pieces);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.bufferedBytes > 0) {
      const all = concatBytes(this.buffered);
      for (let at = 0; at < all.byteLength; at += MAX_PIECE_BYTES)
        this.pieces.push(all.subarray(at, at + MAX_PIECE_BYTES));
      this.buffered = [];
      this.bufferedBytes = 0;
    }
    this.sending = this.sending.then(() => this.send());
  }

  private async send(): Promise<void> {
    while (this.pieces.length > 0 && !this.refused) {
      try {
        await this.repository.appendOutput({ ...this.claim, seq: this.seq, chunk: this.pieces[0]! });
        this.pieces.shift();
        this.seq++;
      } catch (e) {
        if (e instanceof ClaimConflictError || e instanceof NotFoundError) {
          this.refused = true;
          this.pieces.length = 0;
          return;
        }
        // Kept for the next flush (or close, which hands them to the finish).
        this.logger.debug('output not sent; retrying later', { error: errorMessage(e) });
        if (!this.closed) this.timer ??= setTimeout(() => this.flush(), this.flushMs);
        return;
      }
    }
  }
}
