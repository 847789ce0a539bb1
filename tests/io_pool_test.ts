/**
 * The I/O workers: copies and hashes give the same answers on a worker as
 * on the calling thread, file errors keep their class across the thread
 * boundary, and a pool whose worker cannot start still does every job.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { IoPool } from "../src/io/pool.ts";
import {
  CopyCheckError,
  copyVerified,
  hashRange,
  variantName,
} from "../src/io/jobs.ts";
import { patternBytes } from "./fakes/baidu_fixture.ts";

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "image-agent-io-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("IoPool.run() hashes ranges and blocks on workers exactly as inline", async () => {
  await withDir(async (dir) => {
    const bytes = patternBytes(10 * 1024 * 1024 + 333, 5);
    const path = join(dir, "big.bin");
    await Deno.writeFile(path, bytes);
    const block = 3 * 1024 * 1024;
    const want = [];
    for (let off = 0; off < bytes.length; off += block) {
      want.push(md5(bytes.subarray(off, off + block)));
    }
    await using pool = disposable(new IoPool({ workers: 2 }));
    const whole = await pool.p.run({
      kind: "hash",
      path,
      offset: 0,
      length: -1,
      sha256: true,
      md5: true,
      sliceBytes: 262144,
      blockBytes: block,
    });
    assert.equal(whole.size, bytes.length);
    assert.equal(whole.sha256, sha256(bytes));
    assert.equal(whole.md5, md5(bytes));
    assert.equal(whole.sliceMd5, md5(bytes.subarray(0, 262144)));
    assert.deepEqual(whole.blocks, want);
    // A range that starts on block 2 and stops at the end of block 3.
    const part = await pool.p.run({
      kind: "hash",
      path,
      offset: block,
      length: 2 * block,
      blockBytes: block,
    });
    assert.deepEqual(part.blocks, want.slice(1, 3));
    assert.deepEqual(
      hashRange({
        kind: "hash",
        path,
        offset: block,
        length: 2 * block,
        blockBytes: block,
      }),
      part,
      "inline gives the same answer",
    );
  });
});

Deno.test("IoPool.run() copies with the source's SHA-256, reuses an identical copy, and keeps error classes", async () => {
  await withDir(async (dir) => {
    const bytes = patternBytes(300_001, 9);
    const source = join(dir, "cat.png");
    await Deno.writeFile(source, bytes);
    const folder = join(dir, "copies", "A-1");
    const dest = join(folder, "cat.png");
    await using pool = disposable(new IoPool({ workers: 1 }));
    const job = { kind: "copy" as const, source, dest, runToken: "run1" };
    let progress = 0;
    const first = await pool.p.run(job, (n) => (progress += n));
    assert.deepEqual(first, {
      size: bytes.length,
      sha256: sha256(bytes),
      dest,
      reused: false,
    });
    assert.equal(progress, bytes.length);
    assert.deepEqual(await Deno.readFile(dest), bytes);
    const again = await pool.p.run(job);
    assert.equal(again.reused, true, "an identical copy is not written again");
    assert.deepEqual(
      [...Deno.readDirSync(folder)].map((e) => e.name),
      ["cat.png"],
      "no temp file is left",
    );
    await assert.rejects(
      pool.p.run({ ...job, source: join(dir, "missing.png") }),
      Deno.errors.NotFound,
      "a missing image is NotFound on this side too",
    );
  });
});

Deno.test("copyVerified() never replaces another file: the copy takes the next free name", async () => {
  await withDir(async (dir) => {
    const folder = join(dir, "X_1");
    await Deno.mkdir(folder);
    const other = patternBytes(1000, 1);
    await Deno.writeFile(join(folder, "hd.png"), other);
    const mine = patternBytes(1200, 2);
    const source = join(dir, "hd.png");
    await Deno.writeFile(source, mine);
    const job = {
      kind: "copy" as const,
      source,
      dest: join(folder, "hd.png"),
      runToken: "run1",
    };
    const done = copyVerified(job);
    assert.equal(done.dest, join(folder, "hd~2.png"));
    assert.equal(done.reused, false);
    assert.deepEqual(await Deno.readFile(join(folder, "hd.png")), other);
    assert.deepEqual(await Deno.readFile(join(folder, "hd~2.png")), mine);
    // Asked again, it finds its copy under the name it took.
    const again = copyVerified(job);
    assert.deepEqual([again.dest, again.reused], [done.dest, true]);
    assert.equal(variantName("/a/README", 3), "/a/README~3");
  });
});

Deno.test("copyVerified() removes the temp files of a killed run but not those of its own run", async () => {
  await withDir(async (dir) => {
    const folder = join(dir, "A-1");
    await Deno.mkdir(folder);
    const stale = join(folder, ".cat.png.partial-old-1234");
    const inFlight = join(folder, ".cat.png.partial-run1-5678");
    await Deno.writeFile(stale, new Uint8Array(10));
    await Deno.writeFile(inFlight, new Uint8Array(10));
    const source = join(dir, "cat.png");
    await Deno.writeFile(source, patternBytes(100, 3));
    copyVerified({
      kind: "copy",
      source,
      dest: join(folder, "cat.png"),
      runToken: "run1",
    });
    const names = [...Deno.readDirSync(folder)].map((e) => e.name).sort();
    assert.deepEqual(names, [".cat.png.partial-run1-5678", "cat.png"]);
  });
});

Deno.test("copyVerified() refuses an image that changes while it is copied and leaves no temp file", async () => {
  await withDir(async (dir) => {
    const source = join(dir, "dog.png");
    await Deno.writeFile(source, patternBytes(5000, 1));
    const real = Deno.statSync;
    let calls = 0;
    // The second look at the image (after the copy) sees a new version.
    // deno-lint-ignore no-explicit-any -- the test's injected change
    (Deno as any).statSync = (p: string | URL) => {
      if (String(p) === source && ++calls === 2) {
        Deno.writeFileSync(source, patternBytes(5001, 2));
      }
      return real(p);
    };
    try {
      assert.throws(
        () =>
          copyVerified({
            kind: "copy",
            source,
            dest: join(dir, "out", "dog.png"),
            runToken: "run1",
          }),
        (err) => err instanceof CopyCheckError && err.check === "changed",
      );
    } finally {
      // deno-lint-ignore no-explicit-any -- undoing the patch
      (Deno as any).statSync = real;
    }
    assert.deepEqual([...Deno.readDirSync(join(dir, "out"))], []);
  });
});

Deno.test("IoPool falls back to the calling thread, once and said, when no worker can start", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.bin");
    const bytes = patternBytes(70_000, 3);
    await Deno.writeFile(path, bytes);
    const warnings: string[] = [];
    await using pool = disposable(
      new IoPool({
        workers: 2,
        warn: (m) => warnings.push(m),
        workerUrl:
          new URL("./testdata/no-such-worker.ts", import.meta.url).href,
      }),
    );
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        pool.p.run({ kind: "hash", path, offset: 0, length: -1, sha256: true })
      ),
    );
    for (const r of results) assert.equal(r.sha256, sha256(bytes));
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0], /main thread: no I\/O worker could be started/);
  });
});

function disposable(p: IoPool) {
  return { p, [Symbol.asyncDispose]: () => p.close() };
}
