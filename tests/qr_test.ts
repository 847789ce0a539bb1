/** renderQr(): the drawn code carries exactly the QR modules. */

import assert from "node:assert/strict";
import { qrMatrix, renderQr } from "../src/cli/qr.ts";

Deno.test("renderQr() draws every module of the code inside a light quiet zone", () => {
  const text = "https://openapi.baidu.com/device?display=mobile&code=abcd1234";
  const m = qrMatrix(text);
  const lines = renderQr(text).split("\n");
  const size = m.length + 4;
  assert.equal(lines.length, Math.ceil(size / 2));
  // Read the picture back: each character holds two module rows.
  const light: boolean[][] = [];
  for (const line of lines) {
    const chars = [...line];
    assert.equal(chars.length, size);
    light.push(chars.map((ch) => ch === "█" || ch === "▀"));
    light.push(chars.map((ch) => ch === "█" || ch === "▄"));
  }
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const inside = r >= 2 && c >= 2 && r < m.length + 2 && c < m.length + 2;
      const expectedLight = inside ? !m[r - 2][c - 2] : true;
      assert.equal(light[r][c], expectedLight, `module ${r},${c}`);
    }
  }
  // A finder pattern sits in the top-left corner: 7 dark modules across.
  assert.deepEqual(m[0].slice(0, 7), [
    true,
    true,
    true,
    true,
    true,
    true,
    true,
  ]);
});
