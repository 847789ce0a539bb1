/**
 * The storage contract, run against every backup target (the local folder
 * in a temp dir, Baidu Netdisk against the loopback fake): what the engine
 * relies on, checked the same way for each.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { StorageError } from "../src/errors.ts";
import type { Storage, UploadSource } from "../src/storage/storage.ts";
import { memorySlot, patternBytes, readAll } from "./fakes/baidu_fixture.ts";

export interface ContractTarget extends AsyncDisposable {
  storage: Storage;
  /** A temp folder for source files. */
  dir: string;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function source(
  dir: string,
  orderNo: string,
  fileName: string,
  bytes: Uint8Array,
): Promise<UploadSource> {
  const path = join(dir, `${crypto.randomUUID()}-${fileName}`);
  await Deno.writeFile(path, bytes);
  return { orderNo, path, fileName, size: bytes.length };
}

/** Registers the contract tests for one target. */
export function storageContract(
  name: string,
  open: () => Promise<ContractTarget>,
): void {
  const test = (what: string, fn: (t: ContractTarget) => Promise<void>) =>
    Deno.test(`${name}: ${what}`, async () => {
      await using target = await open();
      await fn(target);
    });

  test("put() stores a copy that open() gives back byte for byte", async (t) => {
    const bytes = patternBytes(300 * 1024 + 17, 7);
    const src = await source(t.dir, "A-1001", "cat.jpg", bytes);
    let progressed = 0;
    const slot = memorySlot();
    const put = await t.storage.put(src, {
      resume: slot,
      onProgress: (n) => (progressed += n),
    });
    assert.equal(put.size, bytes.length);
    assert.equal(put.sha256, sha256(bytes), "put returns the source SHA-256");
    assert.equal(put.reused, false);
    assert.ok(put.verifiedBy.length > 0);
    assert.equal(progressed, bytes.length, "progress adds up to the size");
    assert.equal(slot.load(), undefined, "resume state is cleared on success");
    const back = await readAll(await t.storage.open(put.remotePath));
    assert.equal(back.length, bytes.length);
    assert.equal(sha256(back), sha256(bytes));
  });

  test("put() of the same content twice recognises the copy", async (t) => {
    const bytes = patternBytes(150 * 1024, 3);
    const src = await source(t.dir, "A-1002", "dog.png", bytes);
    const first = await t.storage.put(src);
    const second = await t.storage.put(src);
    assert.equal(second.reused, true, "the second put sends nothing");
    assert.equal(second.remotePath, first.remotePath);
    assert.equal(second.sha256, first.sha256);
  });

  test("put() never replaces another file at the same name, only its own earlier copy", async (t) => {
    // Two orders whose copies get one name ("X/1" and "X_1" make the same
    // folder), then a new version of the second one's image.
    const one = patternBytes(20_000, 11);
    const two = patternBytes(21_000, 12);
    const first = await t.storage.put(
      await source(t.dir, "X/1", "hd.png", one),
    );
    const second = await t.storage.put(
      await source(t.dir, "X_1", "hd.png", two),
    );
    assert.notEqual(second.remotePath, first.remotePath);
    assert.equal(second.reused, false);
    assert.equal(
      sha256(await readAll(await t.storage.open(first.remotePath))),
      sha256(one),
    );
    assert.equal(
      sha256(await readAll(await t.storage.open(second.remotePath))),
      sha256(two),
    );
    const three = patternBytes(22_000, 13);
    const again = await t.storage.put(
      await source(t.dir, "X_1", "hd.png", three),
      { replace: second.remotePath },
    );
    assert.equal(
      sha256(await readAll(await t.storage.open(again.remotePath))),
      sha256(three),
    );
    assert.equal(
      sha256(await readAll(await t.storage.open(first.remotePath))),
      sha256(one),
      "the other order's copy is untouched",
    );
  });

  test("put() keeps Chinese names and spaces", async (t) => {
    const bytes = patternBytes(10_000, 5);
    const src = await source(t.dir, "订单 42", "猫 咪 画像.jpg", bytes);
    const put = await t.storage.put(src);
    assert.ok(put.remotePath.includes("订单 42"), put.remotePath);
    assert.ok(put.remotePath.endsWith("猫 咪 画像.jpg"), put.remotePath);
    const stat = await t.storage.stat(put.remotePath);
    assert.deepEqual(stat, { remotePath: put.remotePath, size: 10_000 });
    const back = await readAll(await t.storage.open(put.remotePath));
    assert.equal(sha256(back), sha256(bytes));
  });

  test("stat() is null for a copy that is not there", async (t) => {
    const bytes = patternBytes(1000, 9);
    const put = await t.storage.put(
      await source(t.dir, "A-1003", "x.jpg", bytes),
    );
    const missing = put.remotePath.replace(/x\.jpg$/, "y.jpg");
    assert.equal(await t.storage.stat(missing), null);
  });

  test("remove() deletes copies and accepts ones already gone", async (t) => {
    const a = await t.storage.put(
      await source(t.dir, "A-2001", "a.jpg", patternBytes(2000, 1)),
    );
    const b = await t.storage.put(
      await source(t.dir, "A-2002", "b.jpg", patternBytes(3000, 2)),
    );
    await t.storage.remove([a.remotePath, b.remotePath]);
    assert.equal(await t.storage.stat(a.remotePath), null);
    assert.equal(await t.storage.stat(b.remotePath), null);
    await t.storage.remove([a.remotePath]);
  });

  test("open() of a missing copy fails with a StorageError", async (t) => {
    const put = await t.storage.put(
      await source(t.dir, "A-3001", "here.jpg", patternBytes(500, 4)),
    );
    await t.storage.remove([put.remotePath]);
    await assert.rejects(
      async () => await readAll(await t.storage.open(put.remotePath)),
      (err) => err instanceof StorageError,
    );
  });

  test("admit() lets small files through", async (t) => {
    const src = await source(t.dir, "A-4001", "s.jpg", patternBytes(800, 6));
    const admission = await t.storage.admit([src]);
    assert.equal(admission.rejected.size, 0);
    assert.equal(admission.shortBy, undefined);
  });

  test("describe() names the place copies go", (t) => {
    assert.ok(t.storage.describe().length > 0);
    return Promise.resolve();
  });
}
