import assert from "node:assert/strict";
import { join } from "node:path";
import { createHash, IO_CHUNK, writeStream } from "../src/fsutil.ts";

async function* pieces(sizes: number[]): AsyncIterable<Uint8Array> {
  let n = 0;
  for (const size of sizes) {
    const p = new Uint8Array(size);
    for (let i = 0; i < size; i++) p[i] = (n++ * 31) & 0xff;
    yield p;
  }
}

Deno.test("writeStream() writes pieces of every size in order and hashes each once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Small pieces that fill the buffer across its edge, one larger than
    // the buffer while it is empty, one larger while it is part full.
    const sizes = [
      1,
      70_000,
      IO_CHUNK - 70_001,
      3,
      IO_CHUNK + 5,
      10,
      2 * IO_CHUNK,
      7,
    ];
    const expected = createHash("sha256");
    for await (const p of pieces(sizes)) expected.update(p);
    const want = expected.digest("hex");

    const path = join(dir, "out.bin");
    const hash = createHash("sha256");
    let seen = 0;
    {
      using file = await Deno.open(path, { write: true, createNew: true });
      const n = await writeStream(file, pieces(sizes), (p) => {
        hash.update(p);
        seen += p.length;
      });
      assert.equal(n, sizes.reduce((a, b) => a + b, 0));
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.equal(seen, total, "every byte reaches the hash exactly once");
    assert.equal(hash.digest("hex"), want);
    const written = await Deno.readFile(path);
    assert.equal(written.length, total);
    assert.equal(createHash("sha256").update(written).digest("hex"), want);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
