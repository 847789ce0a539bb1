/**
 * Restoring from Baidu Netdisk: the dlink with the required client
 * identity, the 302 to the CDN, resume with Range after a broken
 * connection, a fresh dlink when the old one expired, and a stream that
 * never ends short.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { StorageError } from "../src/errors.ts";
import { parseAnswer } from "../src/storage/baidu/http.ts";
import { parseApiError } from "../src/storage/baidu/errors.ts";
import {
  patternBytes,
  readAll,
  startBaidu,
  within,
} from "./fakes/baidu_fixture.ts";

const PATH = "/apps/image-agent/hd/R-1/portrait.jpg";
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

Deno.test("open() downloads with User-Agent pan.baidu.com through the redirect and reports progress", async () => {
  await using f = await startBaidu();
  const bytes = patternBytes(700_000, 21);
  f.fake.put(PATH, bytes);
  let progress = 0;
  const got = await readAll(
    await f.storage.open(PATH, { onProgress: (n) => (progress += n) }),
  );
  assert.equal(sha(got), sha(bytes));
  assert.equal(progress, bytes.length);
  assert.deepEqual(f.fake.userAgents, ["pan.baidu.com"]);
  assert.equal(f.fake.calls.get("cdn"), 1);
});

Deno.test("filemetas() asks for a dlink only when one is wanted", async () => {
  await using f = await startBaidu();
  const file = f.fake.put(PATH, patternBytes(10, 1));
  const [plain] = await f.storage.api.filemetas([String(file.fsId)], false);
  assert.equal(plain.dlink, undefined);
  const [withLink] = await f.storage.api.filemetas([String(file.fsId)], true);
  assert.ok(withLink.dlink);
  const queries = f.fake.log.filter((l) => l.includes("method=filemetas"));
  assert.equal(queries.length, 2);
  assert.doesNotMatch(queries[0], /dlink=/);
  assert.match(queries[1], /dlink=1/);
});

Deno.test("open() resumes a broken download with Range and delivers every byte", async () => {
  await using f = await startBaidu();
  const bytes = patternBytes(900_000, 22);
  f.fake.put(PATH, bytes);
  f.fake.fail("cdn", { dropAfter: 100_000 });
  f.fake.fail("cdn", { dropAfter: 50_000 });
  const got = await readAll(await f.storage.open(PATH));
  assert.equal(got.length, bytes.length);
  assert.equal(sha(got), sha(bytes));
  assert.equal(f.fake.calls.get("cdn"), 3);
  assert.ok(f.log.lines.some((l) => /broke at byte \d+; resuming/.test(l)));
});

Deno.test("open() resumes from a server that ignores Range by dropping the bytes it already has", async () => {
  await using f = await startBaidu({ retries: 2 });
  const bytes = patternBytes(600_000, 29);
  f.fake.put(PATH, bytes);
  f.fake.fail("cdn", { dropAfter: 200_000 });
  f.fake.fail("cdn", { ignoreRange: true }, 5);
  let progress = 0;
  const got = await readAll(
    await f.storage.open(PATH, { onProgress: (n) => (progress += n) }),
  );
  assert.equal(sha(got), sha(bytes));
  assert.equal(progress, bytes.length, "no byte counted twice");
  assert.equal(f.fake.calls.get("cdn"), 2);
});

Deno.test("open() errors instead of ending short when the connection keeps breaking", async () => {
  await using f = await startBaidu({ retries: 2 });
  const bytes = patternBytes(300_000, 23);
  f.fake.put(PATH, bytes);
  // Each try breaks before a byte arrives: no progress, so the retries run
  // out (a try that delivers bytes starts the count again).
  f.fake.fail("cdn", { dropAfter: 0 }, 20);
  await assert.rejects(
    readAll(await f.storage.open(PATH)),
    (err) => err instanceof StorageError && err.failure === "retry",
  );
});

Deno.test("open() drops a download that goes quiet mid-body and resumes it with Range", async () => {
  await using f = await startBaidu({ readIdleMs: 200 });
  const bytes = patternBytes(400_000, 27);
  f.fake.put(PATH, bytes);
  f.fake.fail("cdn", { stallAfter: 150_000 });
  const got = await within(10_000, readAll(await f.storage.open(PATH)));
  assert.equal(sha(got), sha(bytes));
  assert.equal(f.fake.calls.get("cdn"), 2);
  assert.ok(f.fake.ranges.some((r) => /^bytes=\d+-$/.test(r)));
  assert.ok(f.log.lines.some((l) => /broke at byte \d+; resuming/.test(l)));
});

Deno.test("open() gives up on a dlink that never answers and asks again", async () => {
  await using f = await startBaidu({ timeoutMs: 200 });
  const bytes = patternBytes(50_000, 28);
  f.fake.put(PATH, bytes);
  f.fake.fail("dlink", { stall: true });
  f.fake.fail("cdn", { stall: true });
  const got = await within(10_000, readAll(await f.storage.open(PATH)));
  assert.equal(sha(got), sha(bytes));
  assert.equal(f.fake.calls.get("dlink"), 3);
  assert.equal(f.fake.calls.get("cdn"), 2);
});

Deno.test("open() asks for a new dlink when the old one expired", async () => {
  await using f = await startBaidu();
  const bytes = patternBytes(10_000, 24);
  f.fake.put(PATH, bytes);
  f.fake.fail("dlink", { errorCode: 31360, status: 403, msg: "url expired" });
  const got = await readAll(await f.storage.open(PATH));
  assert.equal(sha(got), sha(bytes));
  assert.equal(f.fake.calls.get("filemetas"), 2);
});

Deno.test("open() delivers the bytes it gets; a corrupted download fails the SHA-256 check", async () => {
  await using f = await startBaidu();
  const bytes = patternBytes(20_000, 25);
  f.fake.put(PATH, bytes);
  f.fake.fail("cdn", { corrupt: true });
  const got = await readAll(await f.storage.open(PATH));
  assert.equal(got.length, bytes.length);
  assert.notEqual(sha(got), sha(bytes), "the restore check must catch it");
});

Deno.test("open() never puts a signed address or token in its errors or log", async () => {
  await using f = await startBaidu({ retries: 1 });
  f.fake.put(PATH, patternBytes(5000, 26));
  f.fake.fail("cdn", { status: 500 }, 10);
  const err = await readAll(await f.storage.open(PATH)).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(err instanceof StorageError);
  for (const s of f.secrets()) {
    assert.ok(!err.message.includes(s), `leak in ${err.message}`);
    assert.ok(!f.log.lines.join("\n").includes(s), "leak in the log");
  }
});

Deno.test("remove() deletes in batches of 100 and accepts copies already gone", async () => {
  await using f = await startBaidu();
  const paths: string[] = [];
  for (let i = 0; i < 150; i++) {
    const p = `/apps/image-agent/hd/O-${i}/x.jpg`;
    f.fake.put(p, patternBytes(10, i));
    paths.push(p);
  }
  paths.push("/apps/image-agent/hd/gone/x.jpg");
  await f.storage.remove(paths);
  assert.equal(f.fake.files.size, 0);
  assert.equal(f.fake.calls.get("delete"), 2);
});

Deno.test("remove() does not count a copy as deleted when the answer cannot be read", async () => {
  await using f = await startBaidu({ retries: 2 });
  f.fake.put(PATH, patternBytes(10, 1));
  f.fake.fail("delete", { garbage: true }, 10);
  await assert.rejects(
    f.storage.remove([PATH]),
    (err) => err instanceof StorageError && err.failure === "retry",
  );
  assert.ok(f.fake.files.has(PATH));
  f.fake.clearFaults();
  f.fake.fail("delete", { garbage: true });
  await f.storage.remove([PATH]);
  assert.ok(!f.fake.files.has(PATH), "a readable answer on the next try");
});

Deno.test("remove() looks a copy up when the answer does not name it", async () => {
  await using f = await startBaidu();
  f.fake.put(PATH, patternBytes(10, 1));
  f.fake.fail("delete", { noInfo: "kept" });
  await assert.rejects(f.storage.remove([PATH]), (err) => {
    assert.ok(err instanceof StorageError);
    assert.match(err.message, /still listed after the delete/);
    return true;
  });
  assert.ok(f.fake.files.has(PATH));
  f.fake.fail("delete", { noInfo: "deleted" });
  await f.storage.remove([PATH]);
  assert.ok(!f.fake.files.has(PATH));
});

Deno.test("stat() fails rather than say a copy is gone when the listing cannot be read", async () => {
  await using f = await startBaidu({ retries: 1 });
  f.fake.put(PATH, patternBytes(10, 1));
  f.fake.fail("list", { garbage: true }, 5);
  await assert.rejects(f.storage.stat(PATH), StorageError);
  f.fake.clearFaults();
  assert.deepEqual(await f.storage.stat(PATH), { remotePath: PATH, size: 10 });
});

Deno.test("parseAnswer() keeps 64-bit ids as strings and reads request ids in every form", () => {
  const a = parseAnswer(
    '{"errno":0,"fs_id":18446744073709551615,"request_id":1.5e18}',
  );
  assert.equal(a?.fs_id, "18446744073709551615");
  assert.equal(String(a?.request_id), "1500000000000000000");
  const err = parseAnswer('{"errno":31064,"request_id":2.5e17}');
  assert.deepEqual(parseApiError(err, 200)?.code, 31064);
  assert.equal(parseAnswer('{"request_id":"8120"}')?.request_id, "8120");
  assert.equal(parseAnswer("<html>502</html>"), undefined);
  assert.equal(parseAnswer('{"errno":0,"list":['), undefined);
});

Deno.test("remove() reads the items of a delete that failed as a whole (-9: all gone already)", async () => {
  await using f = await startBaidu();
  await f.storage.remove([PATH, "/apps/image-agent/hd/R-2/gone.jpg"]);
  assert.equal(f.fake.calls.get("delete"), 1);
});
