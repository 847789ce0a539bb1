/**
 * Uploads to Baidu Netdisk against the loopback fake: parts in flight,
 * retries, resume, session restarts, and every failure class. The rule
 * checked throughout: `put` resolves only when the fake holds exactly the
 * bytes of the source; otherwise it throws a `StorageError` saying what the
 * engine must do.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { AuthRequiredError, StorageError } from "../src/errors.ts";
import type { UploadSource } from "../src/storage/storage.ts";
import { proxied } from "../src/storage/baidu/part_body.ts";
import { classify } from "../src/storage/baidu/errors.ts";
import {
  memorySlot,
  patternBytes,
  startBaidu,
  UNIT,
} from "./fakes/baidu_fixture.ts";
import type { Fault } from "./fakes/baidu_server.ts";

const FOLDER = "/apps/image-agent/hd";

async function source(
  dir: string,
  size: number,
  name = "portrait.jpg",
  orderNo = "SO-1",
): Promise<UploadSource & { bytes: Uint8Array }> {
  const bytes = patternBytes(size, size % 97);
  const path = join(dir, `${crypto.randomUUID()}.bin`);
  await Deno.writeFile(path, bytes);
  return { orderNo, path, fileName: name, size, bytes };
}

function storedEquals(
  stored: Uint8Array | undefined,
  bytes: Uint8Array,
): boolean {
  return !!stored && stored.length === bytes.length &&
    stored.every((b, i) => b === bytes[i]);
}

function assertNoSecrets(texts: string[], secrets: string[]) {
  for (const t of texts) {
    for (const s of secrets) {
      assert.ok(!t.includes(s), `a secret leaked into: ${t}`);
    }
  }
}

Deno.test("put() sends every part with several in flight and the fake holds the same bytes", async () => {
  await using f = await startBaidu({ concurrency: 4 });
  const src = await source(f.dir, 10 * UNIT + 123);
  const put = await f.storage.put(src);
  assert.equal(put.remotePath, `${FOLDER}/SO-1/portrait.jpg`);
  assert.equal(f.fake.calls.get("upload"), 11);
  assert.equal(f.fake.calls.get("create"), 1);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.match(put.verifiedBy, /create/);
  assert.deepEqual(
    [...f.fake.uploadsByHost],
    [[f.fake.uploadUrls[0], 11]],
    "every part goes to the host locateupload names",
  );
  assert.deepEqual(f.fake.refused, []);
  assertNoSecrets(f.log.lines, f.secrets());
});

Deno.test("put() makes the backup folder and the order folder, which Baidu does not make by itself", async () => {
  await using f = await startBaidu();
  assert.deepEqual([...f.fake.dirs.keys()], ["/apps", "/apps/image-agent"]);
  const src = await source(f.dir, 2 * UNIT, "a.jpg", "SO-1");
  const a = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(a.remotePath)?.bytes, src.bytes));
  assert.ok(f.fake.dirs.has(FOLDER));
  assert.ok(f.fake.dirs.has(`${FOLDER}/SO-1`));
  const made = f.fake.calls.get("mkdir")!;
  await f.storage.put(await source(f.dir, 100, "b.jpg", "SO-2"));
  assert.ok(f.fake.dirs.has(`${FOLDER}/SO-2`));
  assert.equal(
    f.fake.calls.get("mkdir"),
    made + 1,
    "the backup folder is made once per run, then one call per order",
  );
  const listed = await f.storage.api.list(FOLDER);
  assert.deepEqual(
    listed.map((e) => [e.name, e.isDir]),
    [["SO-1", true], ["SO-2", true]],
  );
  assert.deepEqual(f.fake.refused, []);
});

Deno.test("put() makes the app's own folder too when Baidu has not made it yet", async () => {
  await using f = await startBaidu({
    appFolder: false,
    parentMissingErrno: 31063,
  });
  const src = await source(f.dir, 2 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  for (const dir of ["/apps/image-agent", FOLDER, `${FOLDER}/SO-1`]) {
    assert.ok(f.fake.dirs.has(dir), dir);
  }
});

Deno.test("put() takes an existing folder (errno -8) as it is", async () => {
  await using f = await startBaidu();
  f.fake.mkdir(`${FOLDER}/SO-1`);
  const src = await source(f.dir, 2 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("mkdir"), 1);
});

Deno.test("put() makes the folder again when it vanished during the run", async () => {
  await using f = await startBaidu();
  await f.storage.put(await source(f.dir, 100, "a.jpg", "SO-1"));
  f.fake.rmdir(FOLDER); // someone cleans up on the web page meanwhile
  const src = await source(f.dir, 2 * UNIT, "b.jpg", "SO-1");
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.ok(
    f.log.lines.some((l) =>
      /folder of .* is missing .*making it again/.test(l)
    ),
  );
});

Deno.test("put() fails, and says why, when a file is in the way of the order folder", async () => {
  await using f = await startBaidu();
  f.fake.put(`${FOLDER}/SO-1`, new Uint8Array(5));
  const src = await source(f.dir, 2 * UNIT);
  await assert.rejects(f.storage.put(src), (err) => {
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "retry");
    assert.match(
      err.message,
      /"\/apps\/image-agent\/hd\/SO-1".*a file of that name is in the way/,
    );
    return true;
  });
  assert.equal(f.fake.files.size, 1, "nothing but the file in the way");
});

Deno.test("put() encodes a space as %20 and a plus as %2B in every query, so the path matches its body", async () => {
  await using f = await startBaidu({ concurrency: 2 });
  const src = await source(f.dir, 3 * UNIT, "cat + dog 1.jpg", "SO 7");
  const put = await f.storage.put(src);
  assert.equal(put.remotePath, `${FOLDER}/SO 7/cat + dog 1.jpg`);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  const queries = f.fake.log.filter((l) => /superfile2|locateupload/.test(l));
  assert.ok(queries.length >= 4);
  for (const l of queries) {
    assert.ok(!l.includes("+"), `a bare + in ${l}`);
    assert.match(l, /cat%20%2B%20dog%201\.jpg/);
  }
  assert.equal(f.fake.calls.get("precreate"), 1, "no session restarted");
});

Deno.test("put() backs off on rate limits and server errors, then succeeds", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.fail("upload", {
    errorCode: 31034,
    status: 403,
    msg: "hit frequence control",
  }, 2);
  f.fake.fail("precreate", { errno: 31212, msg: "service unavailable" });
  f.fake.fail("create", { status: 502 });
  const before = f.clock.now().getTime();
  const src = await source(f.dir, 3 * UNIT);
  await f.storage.put(src);
  const waited = f.clock.now().getTime() - before;
  assert.ok(waited >= 90_000, `rate limits wait long (waited ${waited} ms)`);
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test("put() waits as long as the server's Retry-After says when it is throttled", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.fail("upload", {
    errorCode: 31034,
    status: 403,
    msg: "hit frequence control",
    retryAfter: 7,
  });
  const before = f.clock.now().getTime();
  const src = await source(f.dir, 2 * UNIT);
  await f.storage.put(src);
  assert.equal(f.clock.now().getTime() - before, 7_000);
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test("put() fails with 'retry' once server errors outlast the retries, and stores nothing", async () => {
  await using f = await startBaidu({ retries: 2 });
  f.fake.fail("upload", { errorCode: 31213, status: 503, msg: "busy" }, 50);
  const src = await source(f.dir, 2 * UNIT);
  await assert.rejects(f.storage.put(src), (err) => {
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "retry");
    assert.match(err.message, /31213/);
    return true;
  });
  assert.equal(f.fake.files.size, 0);
});

Deno.test("put() moves to the next upload host when the first one is down", async () => {
  for (const how of ["cut", 503] as const) {
    await using f = await startBaidu({ concurrency: 2 });
    f.fake.breakUploadHost(0, how);
    const src = await source(f.dir, 6 * UNIT);
    const put = await f.storage.put(src);
    assert.ok(
      storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes),
      String(how),
    );
    assert.equal(f.fake.uploadsByHost.get(f.fake.uploadUrls[1]), 6, `${how}`);
    assert.equal(f.fake.uploadsByHost.get(f.fake.uploadUrls[0]), undefined);
    assert.equal(f.fake.calls.get("precreate"), 1, "no new session");
  }
});

Deno.test("put() falls back to the configured upload host when the named ones are down", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.breakUploadHost(0);
  f.fake.breakUploadHost(1, 503);
  const src = await source(f.dir, 2 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.uploadsByHost.get(f.fake.pcsUrl), 2);
});

Deno.test("put() resends a part whose connection dropped mid-body", async () => {
  await using f = await startBaidu({ concurrency: 2 });
  f.fake.fail("upload", { dropAfter: 1000 }, 2);
  const src = await source(f.dir, 4 * UNIT + 5);
  await f.storage.put(src);
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
  assert.equal(f.fake.calls.get("upload"), 7);
});

Deno.test("put() sends a part again when its 200 answer cannot be read", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.fail("upload", { garbage: true });
  f.fake.fail("create", { garbage: true });
  const src = await source(f.dir, 2 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("upload"), 3);
  assert.equal(f.fake.calls.get("create"), 2);
});

Deno.test("put() resends a part the server received damaged (MD5 differs)", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.fail("upload", { wrongMd5: true });
  const src = await source(f.dir, 2 * UNIT);
  await f.storage.put(src);
  assert.equal(f.fake.calls.get("upload"), 3);
  assert.ok(f.log.lines.some((l) => /arrived damaged/.test(l)));
});

Deno.test("put() fails with 'retry' when the image changes while its parts are sent", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  // The second part is slow; meanwhile the shop saves a new version.
  f.fake.fail("upload", { delayMs: 300 }, 1, 1);
  const src = await source(f.dir, 3 * UNIT);
  const changed = src.bytes.slice();
  changed[changed.length - 1] ^= 0xff;
  const saving = new Promise((r) => setTimeout(r, 100)).then(() =>
    Deno.writeFile(src.path, changed)
  );
  await assert.rejects(
    f.storage.put(src),
    (err) =>
      err instanceof StorageError && err.failure === "retry" &&
      /changed while it was being uploaded/.test(err.message),
  );
  await saving;
  // On a loaded machine one version may go up whole, the old one before the
  // new one is saved, or the new one when it is saved before the hashing
  // reads it (the final look at the file fails the put either way); a copy
  // mixing parts of both versions must never be there.
  const stored = f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`);
  assert.ok(
    stored === undefined || storedEquals(stored.bytes, src.bytes) ||
      storedEquals(stored.bytes, changed),
    "no file is created from parts of two versions",
  );
});

Deno.test("put() starts a new session when the server says the upload id expired", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.fail("upload", {
    errorCode: 31299,
    status: 400,
    msg: "Expried Time Not Match, uploadid has expire",
  });
  const src = await source(f.dir, 3 * UNIT);
  await f.storage.put(src);
  assert.equal(f.fake.calls.get("precreate"), 2);
  assert.ok(f.log.lines.some((l) => /expired .*starting a new one/.test(l)));
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test('put() starts a new session on 31299 "Expried Time Not Match" alone', async () => {
  await using f = await startBaidu({ concurrency: 1 });
  const src = await source(f.dir, 4 * UNIT);
  let expired = false;
  await f.storage.put(src, {
    onProgress: () => {
      if (!expired) {
        expired = true;
        f.fake.expireSessions();
      }
    },
  });
  assert.equal(f.fake.calls.get("precreate"), 2);
  assert.ok(f.log.lines.some((l) => /expired \(error 31299\)/.test(l)));
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test("classify() reads 31299 by its message: a session gone, or a chunk too small", () => {
  for (
    const [message, kind] of [
      ["Expried Time Not Match", "session"],
      ["Expried Time Not Match, uploadid has expire", "session"],
      ["first chunk smaller than 4MB", "fatal"],
      ["chunk size not allowed", "fatal"],
    ]
  ) {
    assert.equal(classify({ code: 31299, message }, { pcs: true }), kind);
  }
});

Deno.test("put() scrubs addresses and tokens out of the server's own error message", async () => {
  await using f = await startBaidu();
  const token = f.fake.accessToken;
  f.fake.fail("precreate", {
    errno: 31023,
    msg:
      `bad request https://d.pcs.baidu.com/file/1?sign=SIGNED-SECRET&access_token=${token} refused`,
  });
  await assert.rejects(f.storage.put(await source(f.dir, 100)), (err) => {
    assert.ok(err instanceof StorageError);
    assert.match(
      err.message,
      /error 31023 bad request https:\/\/d\.pcs\.baidu\.com\/file\/1 refused/,
    );
    assertNoSecrets([err.message], [...f.secrets(), token]);
    return true;
  });
});

Deno.test("classify() retries 42905 and stops on the request and traffic caps (31219, 31220)", () => {
  assert.equal(classify({ code: 42905, message: "" }), "transient");
  assert.equal(classify({ code: 31219, message: "" }, { pcs: true }), "limit");
  assert.equal(classify({ code: 31220, message: "" }, { pcs: true }), "limit");
  assert.equal(classify({ code: 31034, message: "" }, { pcs: true }), "rate");
});

Deno.test("put() stops the run at once on Baidu's request or traffic cap", async () => {
  for (const errorCode of [31219, 31220]) {
    await using f = await startBaidu({ concurrency: 1 });
    f.fake.fail("upload", { errorCode, status: 403, msg: "limit reached" }, 20);
    const before = f.clock.now().getTime();
    await assert.rejects(
      f.storage.put(await source(f.dir, 2 * UNIT)),
      (err) => {
        assert.ok(err instanceof StorageError);
        assert.equal(err.failure, "stop", `${errorCode}`);
        assert.match(err.hint ?? "", /next run carries on/);
        return true;
      },
    );
    assert.equal(f.clock.now().getTime(), before, "no wait for a daily cap");
    assert.equal(f.fake.files.size, 0);
  }
});

Deno.test("put() starts again when create says a part is missing (31363)", async () => {
  await using f = await startBaidu();
  f.fake.fail("create", { errno: 31363, msg: "block miss in superfile2" });
  const src = await source(f.dir, 2 * UNIT + 9);
  await f.storage.put(src);
  assert.equal(f.fake.calls.get("precreate"), 2);
  assert.equal(f.fake.calls.get("create"), 2);
});

Deno.test("put() continues a killed upload from the parts already sent", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  const src = await source(f.dir, 8 * UNIT);
  const slot = memorySlot();
  const kill = new AbortController();
  let sent = 0;
  await assert.rejects(
    f.storage.put(src, {
      resume: slot,
      signal: kill.signal,
      onProgress: (n) => {
        sent += n;
        if (sent >= 3 * UNIT) kill.abort(new Error("killed"));
      },
    }),
  );
  const saved = slot.load() as {
    uploadId: string;
    done: Record<string, string>;
  };
  assert.ok(saved?.uploadId, "the upload id is kept for the next run");
  assert.equal(Object.keys(saved.done).length, 3);
  assert.equal(f.fake.files.size, 0);

  const uploadsBefore = f.fake.calls.get("upload")!;
  await f.storage.put(src, { resume: slot });
  assert.equal(f.fake.calls.get("precreate"), 1, "no new session");
  assert.equal(
    f.fake.calls.get("upload")! - uploadsBefore,
    5,
    "only the 5 missing parts",
  );
  assert.equal(slot.load(), undefined);
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test("put() sends only the parts precreate says are still needed", async () => {
  await using f = await startBaidu({ concurrency: 1, resumeByPath: true });
  const src = await source(f.dir, 8 * UNIT);
  const kill = new AbortController();
  let sent = 0;
  await assert.rejects(
    f.storage.put(src, {
      signal: kill.signal,
      onProgress: (n) => {
        sent += n;
        if (sent >= 3 * UNIT) kill.abort(new Error("killed"));
      },
    }),
  );
  // No resume state was kept: the server's list is all there is to go by.
  const before = f.fake.calls.get("upload")!;
  let progress = 0;
  const put = await f.storage.put(src, { onProgress: (n) => (progress += n) });
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("upload")! - before, 5, "only 5 parts sent");
  assert.equal(f.fake.uploadIds.length, 1, "the server's session went on");
  assert.equal(progress, src.size, "held parts count as progress");
  assert.ok(f.log.lines.some((l) => /already holds 3 of 8 parts/.test(l)));
});

Deno.test("put() sends every part in a new session when the server's list of needed parts was wrong", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  f.fake.fail("precreate", { needed: [0] }); // claims to hold parts 1 and 2
  const src = await source(f.dir, 3 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("precreate"), 2);
  assert.equal(f.fake.calls.get("upload"), 1 + 3);
});

Deno.test("put() recovers when the saved session expired between runs", async () => {
  await using f = await startBaidu({ concurrency: 1 });
  const src = await source(f.dir, 4 * UNIT);
  const slot = memorySlot();
  const kill = new AbortController();
  await assert.rejects(
    f.storage.put(src, {
      resume: slot,
      signal: kill.signal,
      onProgress: () => kill.abort(new Error("killed")),
    }),
  );
  f.fake.expireSessions();
  await f.storage.put(src, { resume: slot });
  assert.equal(f.fake.calls.get("precreate"), 2);
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test("put() stops the run when the drive is full and says how much is needed", async () => {
  await using f = await startBaidu({ quotaTotal: 5 * UNIT });
  const src = await source(f.dir, 8 * UNIT);
  await assert.rejects(f.storage.put(src), (err) => {
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "stop");
    assert.match(
      err.message,
      /Baidu Netdisk is full: .* needs 512 KiB, 320 KiB free/,
    );
    return true;
  });
  assert.equal(f.fake.files.size, 0);
});

Deno.test("put() skips a name Baidu would refuse before sending a byte", async () => {
  await using f = await startBaidu();
  const src = await source(f.dir, 1000, "what?.jpg");
  await assert.rejects(f.storage.put(src), (err) => {
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "skip");
    assert.match(err.message, /"\?"/);
    return true;
  });
  assert.equal(f.fake.calls.get("precreate"), undefined);
});

Deno.test("put() skips an order whose name the server refuses (errno -7, 31062, 20022)", async () => {
  for (const errno of [-7, 31062, 20022]) {
    await using f = await startBaidu();
    f.fake.fail("precreate", { errno, msg: "file name invalid" });
    const src = await source(f.dir, 1000);
    await assert.rejects(f.storage.put(src), (err) => {
      assert.ok(err instanceof StorageError, `errno ${errno}`);
      assert.equal(err.failure, "skip", `errno ${errno}`);
      return true;
    });
  }
});

Deno.test("put() finds the file when create's answer was lost, instead of uploading it again", async () => {
  await using f = await startBaidu({ concurrency: 2 });
  f.fake.fail("create", { lost: true });
  const src = await source(f.dir, 4 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("precreate"), 1, "no new session");
  assert.equal(f.fake.calls.get("upload"), 4, "no part sent twice");
  assert.equal(f.fake.calls.get("create"), 2);
  assert.equal(f.fake.calls.get("cdn"), 1, "read back once");
  assert.match(put.verifiedBy, /answer lost/);
  assert.ok(
    f.log.lines.some((l) => /answer to the commit .* was lost/.test(l)),
  );
});

Deno.test("put() starts again when create's answer was lost and nothing was committed", async () => {
  await using f = await startBaidu({ concurrency: 2 });
  f.fake.put(`${FOLDER}/SO-1/portrait.jpg`, patternBytes(4 * UNIT, 99));
  f.fake.fail("create", { lost: true, ghost: true });
  const src = await source(f.dir, 4 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("precreate"), 2, "an older copy is not taken");
  assert.equal(f.fake.calls.get("cdn"), 1, "it was read back and refused");
  assert.doesNotMatch(put.verifiedBy, /answer lost/);
});

Deno.test("put() never resolves when create answers but the file does not appear", async () => {
  await using f = await startBaidu();
  f.fake.fail("create", { ghost: true });
  const src = await source(f.dir, 2 * UNIT);
  const slot = memorySlot();
  await assert.rejects(f.storage.put(src, { resume: slot }), (err) => {
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "retry");
    assert.match(err.message, /not there/);
    return true;
  });
  assert.equal(slot.load(), undefined, "the next run starts clean");
  await f.storage.put(src, { resume: slot });
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});

Deno.test("put() looks the file up when create's answer gives no size, instead of uploading it again", async () => {
  await using f = await startBaidu();
  f.fake.fail("create", { noSize: true });
  const src = await source(f.dir, 2 * UNIT);
  const put = await f.storage.put(src);
  assert.ok(storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes));
  assert.equal(f.fake.calls.get("precreate"), 1);
  assert.equal(f.fake.calls.get("create"), 1);
  assert.equal(f.fake.calls.get("filemetas"), 1, "found with its size");
});

Deno.test("put() never resolves when create confirms another size", async () => {
  await using f = await startBaidu();
  f.fake.fail("create", { lieSize: 5 });
  const src = await source(f.dir, 2 * UNIT);
  await assert.rejects(f.storage.put(src), (err) => {
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "retry");
    assert.match(err.message, /5 bytes/);
    return true;
  });
});

Deno.test("put() resolves only with a complete verified copy, whatever fails", async () => {
  const faults: [string, Fault, number][] = [
    ["upload", { dropAfter: 10 }, 20],
    ["upload", { errorCode: 31212, status: 503 }, 20],
    ["create", { errno: 31190, msg: "file not found" }, 5],
    ["create", { ghost: true }, 1],
    ["list", { status: 500 }, 20],
    ["filemetas", { errno: 31212 }, 20],
    ["precreate", { errno: -10 }, 1],
    ["upload", { wrongMd5: true }, 20],
    ["locateupload", { errorCode: 31212, status: 503 }, 20],
  ];
  for (const [method, fault, times] of faults) {
    await using f = await startBaidu({ retries: 2 });
    f.fake.fail(method, fault, times);
    const src = await source(f.dir, 3 * UNIT + 1);
    const label = `${method} ${JSON.stringify(fault)} x${times}`;
    try {
      const put = await f.storage.put(src);
      assert.ok(
        storedEquals(f.fake.files.get(put.remotePath)?.bytes, src.bytes),
        `resolved without a complete copy: ${label}`,
      );
    } catch (err) {
      assert.ok(err instanceof StorageError, `${label}: ${err}`);
      assertNoSecrets([err.message], f.secrets());
    }
  }
});

Deno.test("admit() rejects files over the member limit and reports missing space", async () => {
  await using f = await startBaidu({
    quotaTotal: 10 * 1024 ** 3,
    realChunks: true,
  });
  const src = (name: string, gib: number): UploadSource => ({
    orderNo: name,
    path: `/x/${name}.tif`,
    fileName: `${name}.tif`,
    size: gib * 1024 ** 3,
  });
  const a = await f.storage.admit([
    src("big", 5),
    src("a", 3),
    src("b", 3.5),
    src("c", 4),
  ]);
  assert.equal(a.rejected.size, 1);
  assert.match(
    a.rejected.get("/x/big.tif") ?? "",
    /5\.0 GiB is over Baidu's 4\.0 GiB limit for one file \(ordinary account\)/,
  );
  assert.equal(a.shortBy, 0.5 * 1024 ** 3, "10.5 GiB wanted, 10 GiB free");
  assert.equal(f.fake.calls.get("precreate"), undefined, "nothing sent");

  await using svip = await startBaidu({ vipType: 2, realChunks: true });
  const b = await svip.storage.admit([src("big", 5)]);
  assert.equal(b.rejected.size, 0, "an SVIP may store 5 GiB in one file");
});

Deno.test("put() asks for a login when the refreshed token is refused too", async () => {
  await using f = await startBaidu();
  f.fake.expireAccessToken();
  f.fake.fail("token", { oauthError: "expired_token" });
  const src = await source(f.dir, 1000);
  await assert.rejects(f.storage.put(src), (err) => {
    assert.ok(err instanceof AuthRequiredError);
    assert.equal(err.failure, "stop");
    assert.match(err.hint ?? "", /baidu login/);
    return true;
  });
  assert.equal(f.fake.files.size, 0);
});

Deno.test("parts go through fetch (and so the proxy) when HTTP(S)_PROXY applies", () => {
  const names = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"];
  const saved = names.map((n) => [n, Deno.env.get(n)] as const);
  try {
    for (const n of names) Deno.env.delete(n);
    assert.equal(proxied("https://c3.pcs.baidu.com/rest/2.0/pcs/x"), false);
    Deno.env.set("HTTPS_PROXY", "http://proxy.example:3128");
    assert.equal(proxied("https://c3.pcs.baidu.com/rest/2.0/pcs/x"), true);
    assert.equal(proxied("http://127.0.0.1:8080/x"), false);
    Deno.env.set("NO_PROXY", "localhost,.baidu.com");
    assert.equal(proxied("https://c3.pcs.baidu.com/rest/2.0/pcs/x"), false);
  } finally {
    for (const [n, v] of saved) {
      if (v === undefined) Deno.env.delete(n);
      else Deno.env.set(n, v);
    }
  }
});

Deno.test("put() resends a part whose connection is cut while it is still being sent", async () => {
  const MIB = 1 << 20;
  await using f = await startBaidu({
    concurrency: 2,
    chunkUnit: 4 * MIB,
    realChunks: true,
  });
  // 256 KiB into a 4 MiB part the upload host closes the connection.
  f.fake.fail("upload", { cutAfter: 256 * 1024 }, 2);
  const src = await source(f.dir, 8 * MIB + 3);
  const put = await f.storage.put(src);
  assert.equal(put.size, src.size);
  assert.equal(f.fake.calls.get("upload"), 3 + 2, "three parts, two resent");
  assert.equal(
    f.log.lines.filter((l) =>
      /superfile2 upload failed: connection broken/.test(l)
    ).length,
    2,
  );
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
  assertNoSecrets(f.log.lines, f.secrets());
});

Deno.test("put() gives up on a part the server never answers after the per-request timeout, then resends it", async () => {
  await using f = await startBaidu({ concurrency: 1, timeoutMs: 300 });
  f.fake.fail("upload", { stall: true });
  const src = await source(f.dir, 2 * UNIT + 1);
  const started = Date.now();
  await f.storage.put(src);
  assert.ok(Date.now() - started >= 300, "the timeout ended the call");
  assert.equal(f.fake.calls.get("upload"), 3 + 1);
  assert.ok(
    storedEquals(
      f.fake.files.get(`${FOLDER}/SO-1/portrait.jpg`)?.bytes,
      src.bytes,
    ),
  );
});
