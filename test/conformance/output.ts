/**
 * Live output (Repository.appendOutput): a running attempt streams its output
 * in numbered chunks, fenced by its claim and capped like any output; what it
 * streamed stays its output however the attempt ends.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { LIMITS, TRUNCATION_MARKER } from '../../src/model/limits.js';
import { ClaimConflictError, InvalidArgumentError, NotFoundError } from '../../src/protocol/errors.js';
import type { ClaimedNode, OutputEvent, WatchEvent } from '../../src/protocol/repository.js';
import { bytes, graph, node, text } from './fixtures.js';
import type { ConformanceTest, Harness, TestAgent } from './harness.js';

function append(agent: TestAgent, claimed: ClaimedNode, seq: number, chunk: string | Uint8Array) {
  return agent.repo.appendOutput({
    runId: claimed.runId,
    node: claimed.node.spec.name,
    claimId: claimed.claimId,
    seq,
    chunk: typeof chunk === 'string' ? bytes(chunk) : chunk,
  });
}

async function liveOutput(h: Harness, runId: string, name: string): Promise<string> {
  return text((await h.node(runId, name)).liveOutput);
}

export function outputSpec(test: ConformanceTest): void {
  describe('live output', () => {
    test('chunks show while the attempt runs; a repeat is ignored; finish adds its output after them', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph([node('a', { retry: { fail: 2 } })]));
      const first = await alice.mustClaim(run.id, 'a');
      assert.equal(await liveOutput(h, run.id, 'a'), '', 'nothing streamed yet');
      await append(alice, first, 0, 'one\n');
      await append(alice, first, 1, 'two\n');
      await append(alice, first, 1, 'two\n'); // a retried request
      await append(alice, first, 0, 'one\n');
      assert.equal(await liveOutput(h, run.id, 'a'), 'one\ntwo\n');
      await assert.rejects(append(alice, first, 3, 'four\n'), InvalidArgumentError, 'a gap is refused');
      await assert.rejects(append(alice, first, -1, 'x'), InvalidArgumentError);
      assert.equal(await liveOutput(h, run.id, 'a'), 'one\ntwo\n', 'a refused chunk leaves no trace');

      await alice.finish(first, 'FAIL', 'exit 1\n');
      const retried = await h.node(run.id, 'a');
      assert.equal(retried.status, 'READY');
      assert.equal(text(retried.attempts[0]!.output), 'one\ntwo\nexit 1\n');
      assert.equal(retried.liveOutput?.byteLength ?? 0, 0, 'a READY node streams nothing');

      const second = await alice.mustClaim(run.id, 'a');
      await append(alice, second, 0, 'again\n');
      assert.equal(await liveOutput(h, run.id, 'a'), 'again\n', 'each attempt streams from seq 0');
      await alice.finish(second, 'SUCCESS');
      const done = await h.node(run.id, 'a');
      assert.deepEqual(
        done.attempts.map((x) => text(x.output)),
        ['one\ntwo\nexit 1\n', 'again\n'],
      );
    });

    test('appends are fenced by the claim: stale, finished and cancelled claims are refused', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b']));
      const a = await alice.mustClaim(run.id, 'a');
      const b = await alice.mustClaim(run.id, 'b');
      await assert.rejects(append(alice, { ...a, claimId: b.claimId }, 0, 'x'), ClaimConflictError);
      await alice.finish(a, 'SUCCESS', 'A');
      await assert.rejects(append(alice, a, 0, 'late'), ClaimConflictError, 'after finish');
      await append(alice, b, 0, 'b so far\n');
      await h.repo.cancel(run.id);
      await assert.rejects(append(alice, b, 1, 'more'), ClaimConflictError, 'after cancel');
      await assert.rejects(
        alice.repo.appendOutput({ runId: run.id, node: 'zz', claimId: b.claimId, seq: 0, chunk: bytes('x') }),
        NotFoundError,
      );
      const stored = await h.repo.inspect(run.id);
      assert.deepEqual(
        stored.nodes.map((n) => [n.spec.name, n.attempts.map((x) => [x.conclusion, text(x.output)])]),
        [
          ['a', [['SUCCESS', 'A']]],
          ['b', [['CANCELLED', 'b so far\n']]],
        ],
        'the cancelled attempt keeps what it streamed',
      );
    });

    test('an orphaned attempt keeps its output; the recovering ERROR is added after it', async (h) => {
      const rescuer = await h.agent('rescuer');
      const holder = await h.agent('holder');
      const run = await h.start(graph(['a']));
      const claimed = await holder.mustClaim(run.id, 'a');
      await append(holder, claimed, 0, 'line 1\nline 2\n');
      await h.repo.revokeLease(holder.lease.id); // the holder's process died
      await assert.rejects(append(holder, claimed, 1, 'zombie'), ClaimConflictError);
      const recovery = await rescuer.mustClaim(run.id, 'a');
      assert.equal(recovery.orphan, true);
      assert.equal(await liveOutput(h, run.id, 'a'), 'line 1\nline 2\n');
      await rescuer.finish(recovery, 'ERROR', 'agent holder lost its lease');
      const done = await h.node(run.id, 'a');
      assert.equal(text(done.attempts[0]!.output), 'line 1\nline 2\nagent holder lost its lease');
    });

    test('the output is capped with the truncation marker, then further chunks are dropped', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const claimed = await alice.mustClaim(run.id, 'a');
      const half = new Uint8Array(LIMITS.maxOutputBytes / 2).fill(0x61);
      await append(alice, claimed, 0, half);
      await append(alice, claimed, 1, half);
      await append(alice, claimed, 2, 'more');
      const live = (await h.node(run.id, 'a')).liveOutput!;
      assert.equal(live.byteLength, LIMITS.maxOutputBytes);
      assert.ok(text(live).endsWith(TRUNCATION_MARKER));
      await alice.finish(claimed, 'SUCCESS', 'the end');
      const output = (await h.node(run.id, 'a')).attempts[0]!.output;
      assert.equal(output.byteLength, LIMITS.maxOutputBytes, 'finish adds nothing past the cap');
      assert.ok(text(output).endsWith(TRUNCATION_MARKER));
    });

    test('watch sends each appended chunk with its offset in the attempt', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const claimed = await alice.mustClaim(run.id, 'a');
      await append(alice, claimed, 0, 'before the watch\n');
      const watcher = h.watch(run.id);
      await watcher.waitFor('the snapshot', (e) => e.length > 0);
      const snapshot = watcher.items[0]!;
      assert.ok(snapshot.type === 'snapshot');
      assert.equal(text(snapshot.run.nodes[0]!.liveOutput), 'before the watch\n');
      await append(alice, claimed, 1, 'one\n');
      await append(alice, claimed, 2, 'two\n');
      await watcher.waitFor('both chunks', (e) => outputEvents(e).length >= 2);
      const chunks = outputEvents(watcher.items);
      assert.ok(chunks.every((c) => c.runId === run.id && c.node === 'a' && c.attempt === 1));
      // At least once: rebuild the stream by offset, as a reader does.
      let rebuilt = 'before the watch\n';
      for (const c of chunks) {
        assert.ok(c.offset <= bytes(rebuilt).byteLength, 'no chunk skips ahead');
        rebuilt = text(bytes(rebuilt).subarray(0, c.offset)) + text(c.chunk);
      }
      assert.equal(rebuilt, 'before the watch\none\ntwo\n');
      await alice.finish(claimed, 'SUCCESS');
      await watcher.waitForEnd('the watch of the completed run');
    });
  });
}

function outputEvents(events: WatchEvent[]): OutputEvent[] {
  return events.filter((e): e is OutputEvent => e.type === 'output');
}
