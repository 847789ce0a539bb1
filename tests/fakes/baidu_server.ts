/**
 * A fake Baidu Netdisk on loopback, strict where the real one is: OAuth
 * (code, device and refresh grants, with refresh-token rotation that kills
 * the old pair), uinfo and quota, precreate / locateupload / superfile2 /
 * create with block-list MD5 checks, part sizes by member level and upload
 * ids that expire, list, filemetas with dlinks, a dlink that demands
 * `User-Agent: pan.baidu.com` and answers 302 to a CDN path on the same
 * server, `Range`, and filemanager delete. Errors come in the real shapes.
 *
 * Faults are queued by method name ("token", "device", "uinfo", "quota",
 * "precreate", "locateupload", "upload", "create", "list", "filemetas",
 * "delete", "dlink", "cdn"): an error answer on the next N calls, a
 * connection dropped mid-answer or (upload host) mid-request while the
 * client is still sending, an answer that never comes, a slow answer,
 * corrupted bytes.
 */

import { createHash } from "node:crypto";

const MIB = 1 << 20;

export interface FakeBaiduOptions {
  appKey?: string;
  secretKey?: string;
  vipType?: number;
  quotaTotal?: number;
  /** What counts as "4 MiB" in the chunk rules; small in tests. */
  chunkUnit?: number;
  /** Keep only sizes and MD5s, not bytes (benchmarks). */
  discardBytes?: boolean;
  /** Codes `baidu login --code` may use. */
  codes?: string[];
}

interface StoredFile {
  fsId: bigint;
  path: string;
  size: number;
  md5: string;
  blockList: string[];
  bytes?: Uint8Array;
  mtime: number;
}

interface Session {
  path: string;
  size: number;
  blockList: string[];
  parts: Map<number, { md5: string; bytes?: Uint8Array; length: number }>;
  expired: boolean;
}

export interface Fault {
  /** xpan errno (HTTP 200). */
  errno?: number;
  /** PCS error_code with `status`. */
  errorCode?: number;
  status?: number;
  msg?: string;
  /** OAuth error string (HTTP 400). */
  oauthError?: string;
  /** Cut the connection after this many body bytes. */
  dropAfter?: number;
  /** Wait before answering, in ms (real time; keep small). */
  delayMs?: number;
  /** Flip a byte of the answer body (downloads). */
  corrupt?: boolean;
  /** Answer a wrong MD5 for an uploaded part. */
  wrongMd5?: boolean;
  /** Send `Retry-After: <seconds>` with the error answer. */
  retryAfter?: number;
  /** The access token dies just before this call (a refresh still works). */
  expireToken?: boolean;
  /** The access and refresh tokens both die: only a new login helps. */
  revoke?: boolean;
  /** Another client fills the drive first: this many bytes stay free. */
  fillQuota?: number;
  /**
   * upload: close the connection once this many body bytes were read, while
   * the client is still sending.
   */
  cutAfter?: number;
  /**
   * upload: read the whole body but never answer; the client's own
   * per-request timeout has to end the call.
   */
  stall?: boolean;
  /** create: answer success but never store the file. */
  ghost?: boolean;
  /** create: store the file but answer this size. */
  lieSize?: number;
}

export class FakeBaidu {
  readonly appKey: string;
  readonly secretKey: string;
  vipType: number;
  quotaTotal: number;
  readonly chunkUnit: number;
  readonly files = new Map<string, StoredFile>();
  readonly sessions = new Map<string, Session>();
  /** Calls per method name, for assertions. */
  readonly calls = new Map<string, number>();
  /** Every User-Agent seen on dlink calls. */
  readonly userAgents: string[] = [];
  /** Every query string seen, to prove tokens travel where expected. */
  readonly log: string[] = [];
  /** Every access and refresh token ever issued (none may leak). */
  readonly issued: string[] = [];
  /** Part numbers received intact, per upload id, in arrival order. */
  readonly partsByUpload = new Map<string, number[]>();
  /** Upload ids handed out by precreate, in order. */
  readonly uploadIds: string[] = [];
  /** `Range` headers seen on CDN downloads. */
  readonly ranges: string[] = [];
  /** Times (ms) of every call per method, to check backoff. */
  readonly times = new Map<string, number[]>();
  /** Names the server refuses (errno -7) though the client allows them. */
  rejectName?: (name: string) => boolean;
  readonly codes: Set<string>;
  accessToken = "";
  refreshToken = "";
  /** Device flow: answers before approval ("authorization_pending" etc.). */
  deviceQueue: string[] = [];
  #faults = new Map<string, (Fault | null)[]>();
  #nextId = 9007199254740993n; // above 2^53: ids must not pass through a float
  #seq = 0;
  #discard: boolean;
  #server?: Deno.HttpServer;
  #uploads?: Deno.Listener;
  #conns = new Set<Deno.Conn>();
  url = "";
  /**
   * The upload host `locateupload` names: a plain HTTP/1.1 server over TCP
   * (one request per connection), so a part can be cut mid-body.
   */
  uploadUrl = "";

  constructor(options: FakeBaiduOptions = {}) {
    this.appKey = options.appKey ?? "fake-app-key";
    this.secretKey = options.secretKey ?? "fake-secret-key";
    this.vipType = options.vipType ?? 0;
    this.quotaTotal = options.quotaTotal ?? 2 * 1024 ** 4;
    this.chunkUnit = options.chunkUnit ?? 4 * MIB;
    this.#discard = options.discardBytes ?? false;
    this.codes = new Set(options.codes ?? ["good-code"]);
  }

  static async start(options: FakeBaiduOptions = {}): Promise<FakeBaidu> {
    const fake = new FakeBaidu(options);
    await new Promise<void>((resolve) => {
      fake.#server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        onListen: ({ port }) => {
          fake.url = `http://127.0.0.1:${port}`;
          resolve();
        },
      }, (req) => fake.#handle(req));
    });
    fake.#uploads = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    fake.uploadUrl = `http://127.0.0.1:${
      (fake.#uploads.addr as Deno.NetAddr).port
    }`;
    fake.#acceptUploads(fake.#uploads);
    return fake;
  }

  async close(): Promise<void> {
    this.#uploads?.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await this.#server?.shutdown();
  }

  async #acceptUploads(listener: Deno.Listener): Promise<void> {
    try {
      for await (const conn of listener) {
        this.#conns.add(conn);
        this.#uploadConn(conn).catch(() => {}).finally(() => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch { /* already closed */ }
        });
      }
    } catch { /* listener closed */ }
  }

  /** One request on the upload host, answered by the same handler. */
  async #uploadConn(conn: Deno.Conn): Promise<void> {
    // Read pieces are kept in a list and joined once: parts are megabytes.
    const pieces: Uint8Array[] = [];
    let have = 0;
    const more = async (): Promise<boolean> => {
      const piece = new Uint8Array(256 * 1024);
      const n = await conn.read(piece);
      if (n === null) return false;
      pieces.push(piece.subarray(0, n));
      have += n;
      return true;
    };
    let end = -1;
    while ((end = indexOfCrlf2(join(pieces))) < 0) {
      if (!(await more())) return;
    }
    const first = join(pieces);
    pieces.splice(0, pieces.length, first.subarray(end + 4));
    have = first.length - end - 4;
    const [line, ...lines] = new TextDecoder().decode(first.subarray(0, end))
      .split("\r\n");
    const [method, target] = line.split(" ");
    const headers = new Headers();
    for (const l of lines) {
      const i = l.indexOf(":");
      if (i > 0) headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
    }
    const length = Number(headers.get("content-length"));
    const isPart = target.startsWith("/rest/2.0/pcs/superfile2");
    // The fault is taken as the request line arrives, so parts in flight
    // at once each get their own.
    const taken = isPart ? { fault: this.#count("upload") } : undefined;
    const next = taken?.fault;
    if (next && (next.cutAfter !== undefined || next.stall)) {
      this.times.set("upload", [
        ...(this.times.get("upload") ?? []),
        Date.now(),
      ]);
      if (next.cutAfter !== undefined) {
        while (have < next.cutAfter && await more()) { /* read on */ }
        return; // closes the connection with the client still sending
      }
      while (await more().catch(() => false)) pieces.length = 0;
      return;
    }
    if (Number.isFinite(length)) {
      while (have < length) if (!(await more())) return;
    }
    const buf = join(pieces);
    const req = new Request(`${this.uploadUrl}${target}`, {
      method,
      headers,
      body: method === "POST" && Number.isFinite(length)
        ? buf.slice(0, length)
        : undefined,
    });
    const res = await this.#handle(req, taken);
    const out: Uint8Array[] = [];
    let broken = false;
    try {
      for await (const c of res.body ?? []) out.push(c);
    } catch {
      broken = true;
    }
    let n = 0;
    for (const c of out) n += c.length;
    const head = [`HTTP/1.1 ${res.status} ${res.statusText || "X"}`];
    res.headers.forEach((v, k) => {
      if (k !== "content-length") head.push(`${k}: ${v}`);
    });
    head.push(`content-length: ${broken ? n + 64 : n}`, "connection: close");
    await writeAllConn(
      conn,
      new TextEncoder().encode(head.join("\r\n") + "\r\n\r\n"),
    );
    for (const c of out) await writeAllConn(conn, c);
  }

  /** The endpoints block of a config pointing here. */
  get endpoints() {
    return { oauth: this.url, api: this.url, upload: this.url };
  }

  /** Issues a fresh token pair, as a finished login would. */
  issueTokens(): { access_token: string; refresh_token: string } {
    this.accessToken = `AT-${crypto.randomUUID()}`;
    this.refreshToken = `RT-${crypto.randomUUID()}`;
    this.issued.push(this.accessToken, this.refreshToken);
    return { access_token: this.accessToken, refresh_token: this.refreshToken };
  }

  /** Makes the current access token expired (refresh still works). */
  expireAccessToken(): void {
    this.accessToken = `dead-${crypto.randomUUID()}`;
  }

  /**
   * Queues `fault` for the next `times` calls of `method`, after letting
   * `after` calls through untouched.
   */
  fail(method: string, fault: Fault, times = 1, after = 0): void {
    const list = this.#faults.get(method) ?? [];
    for (let i = 0; i < after; i++) list.push(null);
    for (let i = 0; i < times; i++) list.push(fault);
    this.#faults.set(method, list);
  }

  /** Expires every open upload session. */
  expireSessions(): void {
    for (const s of this.sessions.values()) s.expired = true;
  }

  get used(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.size;
    return n;
  }

  /** Stores a file directly, as if uploaded earlier. */
  put(path: string, bytes: Uint8Array): StoredFile {
    const blockList = splitMd5(bytes, this.chunkUnit);
    const f: StoredFile = {
      fsId: this.#nextId++,
      path,
      size: bytes.length,
      md5: md5(bytes),
      blockList,
      bytes: this.#discard ? undefined : bytes,
      mtime: Math.floor(Date.now() / 1000),
    };
    this.files.set(path, f);
    return f;
  }

  #count(method: string): Fault | undefined {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    const list = this.#faults.get(method);
    return list?.shift() ?? undefined;
  }

  /** Drops every queued fault. */
  clearFaults(): void {
    this.#faults.clear();
  }

  /** Faults still queued for `method` (null entries are pass-throughs). */
  pending(method: string): number {
    return this.#faults.get(method)?.filter((f) => f !== null).length ?? 0;
  }

  /** `taken`: the fault already drawn for this call by the upload host. */
  async #handle(req: Request, taken?: { fault?: Fault }): Promise<Response> {
    const url = new URL(req.url);
    this.log.push(`${req.method} ${url.pathname}${url.search}`);
    const q = url.searchParams;
    const p = url.pathname;
    const method = p === "/oauth/2.0/token"
      ? "token"
      : p === "/oauth/2.0/device/code"
      ? "device"
      : p.startsWith("/dl/")
      ? "dlink"
      : p.startsWith("/cdn/")
      ? "cdn"
      : p === "/api/quota"
      ? "quota"
      : q.get("method") === "filemanager"
      ? "delete"
      : q.get("method") ?? p;
    const fault = taken ? taken.fault : this.#count(method);
    this.times.set(method, [...(this.times.get(method) ?? []), Date.now()]);
    if (fault?.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault?.expireToken) this.expireAccessToken();
    if (fault?.fillQuota !== undefined) {
      this.quotaTotal = this.used + fault.fillQuota;
    }
    if (fault?.revoke) {
      this.expireAccessToken();
      this.refreshToken = `dead-${crypto.randomUUID()}`;
    }
    const pcs = p.startsWith("/rest/2.0/pcs/") || method === "cdn" ||
      method === "dlink";
    const special = fault &&
      (fault.dropAfter !== undefined || fault.corrupt || fault.wrongMd5 ||
        fault.ghost || fault.lieSize !== undefined);
    if (fault && !special) {
      if (fault.oauthError) {
        return json(
          { error: fault.oauthError, error_description: "injected" },
          400,
        );
      }
      const extra: Record<string, string> = fault.retryAfter !== undefined
        ? { "retry-after": String(fault.retryAfter) }
        : {};
      if (fault.errorCode !== undefined) {
        await req.body?.cancel();
        return json(
          {
            error_code: fault.errorCode,
            error_msg: fault.msg ?? "injected",
            request_id: 1,
          },
          fault.status ?? 400,
          extra,
        );
      }
      if (fault.errno !== undefined) {
        await req.body?.cancel();
        return json(
          {
            errno: fault.errno,
            errmsg: fault.msg ?? "injected",
            request_id: 1,
          },
          fault.status ?? 200,
          extra,
        );
      }
      if (fault.status) {
        return new Response("<html>error</html>", { status: fault.status });
      }
    }
    if (method === "token") return this.#token(q);
    if (method === "device") return this.#deviceCode(q);
    if (method === "cdn") return this.#cdn(req, fault);
    const token = q.get("access_token");
    if (token !== this.accessToken || !token) {
      await req.body?.cancel();
      return pcs
        ? json({ error_code: 111, error_msg: "Access token expired" }, 401)
        : json({ errno: -6, errmsg: "access token invalid", request_id: 2 });
    }
    const form = req.method === "POST" && method !== "upload"
      ? new URLSearchParams(await req.text())
      : new URLSearchParams();
    switch (method) {
      case "uinfo":
        return json({
          baidu_name: "宠物画像店",
          netdisk_name: "pet-shop",
          vip_type: this.vipType,
          uk: 12345,
          errno: 0,
          request_id: this.#seq++,
        });
      case "quota":
        return json({
          total: this.quotaTotal,
          used: this.used,
          free: this.quotaTotal - this.used,
          expire: false,
          errno: 0,
        });
      case "precreate":
        return this.#precreate(form);
      case "locateupload":
        return json({
          servers: [{ server: this.uploadUrl }],
          bak_servers: [{ server: this.url }],
          error_code: 0,
          request_id: this.#seq++,
        });
      case "upload":
        return await this.#upload(req, q, fault);
      case "create":
        return this.#create(form, fault);
      case "list":
        return this.#list(q);
      case "filemetas":
        return this.#filemetas(q);
      case "delete":
        return this.#delete(form);
      case "dlink":
        return this.#dlink(req, p);
    }
    return json({ error_code: 3, error_msg: "unsupported api" }, 400);
  }

  #token(q: URLSearchParams): Response {
    if (
      q.get("client_id") !== this.appKey ||
      q.get("client_secret") !== this.secretKey
    ) {
      return json({
        error: "invalid_client",
        error_description: "unknown client",
      }, 401);
    }
    const grant = q.get("grant_type");
    if (grant === "authorization_code") {
      const code = q.get("code") ?? "";
      if (!this.codes.delete(code) || q.get("redirect_uri") !== "oob") {
        return json(
          { error: "invalid_grant", error_description: "bad code" },
          400,
        );
      }
    } else if (grant === "refresh_token") {
      if (!this.refreshToken || q.get("refresh_token") !== this.refreshToken) {
        return json({
          error: "expired_token",
          error_description: "refresh token used",
        }, 400);
      }
    } else if (grant === "device_token") {
      if (q.get("code") !== "DEVICE-CODE") {
        return json({
          error: "invalid_grant",
          error_description: "bad device code",
        }, 400);
      }
      const next = this.deviceQueue.shift();
      if (next) return json({ error: next, error_description: next }, 400);
    } else {
      return json({ error: "unsupported_grant_type" }, 400);
    }
    const pair = this.issueTokens();
    return json({
      ...pair,
      expires_in: 2592000,
      scope: "basic netdisk",
      session_key: "SK-secret",
      session_secret: "SS-secret",
    });
  }

  #deviceCode(q: URLSearchParams): Response {
    if (q.get("client_id") !== this.appKey) {
      return json({ error: "invalid_client" }, 400);
    }
    return json({
      device_code: "DEVICE-CODE",
      user_code: "ABCD-1234",
      verification_url: `${this.url}/device`,
      qrcode_url: `${this.url}/qr/ABCD-1234`,
      expires_in: 1800,
      interval: 5,
    });
  }

  #maxChunk(): number {
    return this.vipType >= 2
      ? 8 * this.chunkUnit
      : this.vipType === 1
      ? 4 * this.chunkUnit
      : this.chunkUnit;
  }

  #precreate(form: URLSearchParams): Response {
    const path = form.get("path") ?? "";
    const size = Number(form.get("size"));
    let blockList: string[];
    try {
      blockList = JSON.parse(form.get("block_list") ?? "");
    } catch {
      return json({ errno: 2, errmsg: "param error" });
    }
    if (!path.startsWith("/apps/")) {
      return json({ errno: -7, errmsg: "no access" });
    }
    const name = path.split("/").pop() ?? "";
    if (
      /[\\?|"><:*]/.test(name) || /^[.\s]|[.\s]$/.test(name) ||
      this.rejectName?.(name)
    ) {
      return json({ errno: -7, errmsg: "file name invalid" });
    }
    if (
      form.get("autoinit") !== "1" || !Array.isArray(blockList) ||
      blockList.length === 0
    ) {
      return json({ errno: 2, errmsg: "param error" });
    }
    const limit = (this.vipType >= 2 ? 20 : this.vipType === 1 ? 10 : 4) *
      1024 ** 3;
    if (size > limit) return json({ errno: 31365, errmsg: "file too large" });
    const existing = this.files.get(path);
    if (size > this.quotaTotal - this.used + (existing?.size ?? 0)) {
      return json({ errno: -10, errmsg: "capacity full" });
    }
    const contentMd5 = form.get("content-md5");
    const twin = [...this.files.values()].find((f) =>
      f.size === size && contentMd5 && f.md5 === contentMd5
    );
    if (twin) {
      const f = { ...twin, fsId: this.#nextId++, path };
      this.files.set(path, f);
      return json({
        errno: 0,
        return_type: 2,
        path,
        info: { fs_id: f.fsId, size, path },
      });
    }
    const uploadId = `N1-${crypto.randomUUID()}`;
    this.uploadIds.push(uploadId);
    this.sessions.set(uploadId, {
      path,
      size,
      blockList,
      parts: new Map(),
      expired: false,
    });
    return json({
      errno: 0,
      path,
      uploadid: uploadId,
      return_type: 1,
      block_list: blockList.map((_, i) => i),
      request_id: this.#seq++,
    });
  }

  async #upload(
    req: Request,
    q: URLSearchParams,
    fault?: Fault,
  ): Promise<Response> {
    const s = this.sessions.get(q.get("uploadid") ?? "");
    const partseq = Number(q.get("partseq"));
    if (!s || s.path !== q.get("path") || q.get("type") !== "tmpfile") {
      await req.body?.cancel();
      return json({
        error_code: 31355,
        error_msg: "param error: uploadid not match",
      }, 400);
    }
    if (s.expired) {
      await req.body?.cancel();
      return json({
        error_code: 31299,
        error_msg: "Expried Time Not Match, uploadid has expire",
      }, 400);
    }
    if (
      req.headers.get("transfer-encoding")?.includes("chunked") ||
      !req.headers.get("content-length")
    ) {
      await req.body?.cancel();
      return json(
        { error_code: 31211, error_msg: "chunked body refused" },
        400,
      );
    }
    if (fault?.dropAfter !== undefined) {
      // The whole body is read (an unread body stalls the connection), the
      // part is not kept, and the answer breaks after a few bytes.
      await req.arrayBuffer();
      return dropped();
    }
    const fd = await req.formData();
    const file = fd.get("file");
    if (
      !(file instanceof File) || !Number.isInteger(partseq) || partseq < 0 ||
      partseq >= s.blockList.length
    ) {
      return json({ error_code: 31023, error_msg: "param error" }, 400);
    }
    if (file.size > this.#maxChunk()) {
      return json({ error_code: 31364, error_msg: "chunk too large" }, 400);
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    const sum = md5(bytes);
    const uploadId = q.get("uploadid")!;
    this.partsByUpload.set(uploadId, [
      ...(this.partsByUpload.get(uploadId) ?? []),
      partseq,
    ]);
    s.parts.set(partseq, {
      md5: sum,
      bytes: this.#discard ? undefined : bytes,
      length: bytes.length,
    });
    return json({
      md5: fault?.wrongMd5 ? "0".repeat(32) : sum,
      request_id: this.#seq++,
    });
  }

  #create(form: URLSearchParams, fault?: Fault): Response {
    const path = form.get("path") ?? "";
    const s = this.sessions.get(form.get("uploadid") ?? "");
    if (!s || s.path !== path) {
      return json({ errno: 31355, errmsg: "uploadid not match" });
    }
    if (s.expired) {
      return json({ errno: 31363, errmsg: "block miss in superfile2" });
    }
    const size = Number(form.get("size"));
    const blockList = JSON.parse(form.get("block_list") ?? "[]") as string[];
    if (
      JSON.stringify(blockList) !== JSON.stringify(s.blockList) ||
      size !== s.size
    ) {
      return json({
        errno: 31190,
        errmsg: "file not found: block_list or size mismatch",
      });
    }
    let total = 0;
    for (let i = 0; i < blockList.length; i++) {
      const part = s.parts.get(i);
      if (!part) {
        return json({ errno: 31363, errmsg: "block miss in superfile2" });
      }
      if (part.md5 !== blockList[i]) {
        return json({ errno: 31190, errmsg: "md5 mismatch" });
      }
      if (i < blockList.length - 1) {
        const first = s.parts.get(0)!.length;
        if (
          part.length !== first ||
          (blockList.length > 1 && first < this.chunkUnit)
        ) {
          return json({ errno: 31299, errmsg: "first chunk smaller than 4MB" });
        }
        if (this.vipType === 0 && part.length !== this.chunkUnit) {
          return json({ errno: 31364, errmsg: "chunk size not allowed" });
        }
      }
      total += part.length;
    }
    if (total !== size) return json({ errno: 31190, errmsg: "size mismatch" });
    let bytes: Uint8Array | undefined;
    if (!this.#discard) {
      bytes = new Uint8Array(size);
      let off = 0;
      for (let i = 0; i < blockList.length; i++) {
        bytes.set(s.parts.get(i)!.bytes!, off);
        off += s.parts.get(i)!.length;
      }
    }
    const whole = bytes ? md5(bytes) : `multi-${blockList.join("")}`;
    this.sessions.delete(form.get("uploadid")!);
    const f: StoredFile = {
      fsId: this.#nextId++,
      path,
      size,
      md5: whole,
      blockList,
      bytes,
      mtime: Number(form.get("local_mtime") ?? 0),
    };
    if (!fault?.ghost) this.files.set(path, f);
    return json({
      errno: 0,
      fs_id: f.fsId,
      md5: "cloud" + whole.slice(5),
      server_filename: path.split("/").pop(),
      path,
      size: fault?.lieSize ?? size,
      isdir: 0,
      category: 3,
    });
  }

  #entry(f: StoredFile) {
    return {
      fs_id: f.fsId,
      path: f.path,
      server_filename: f.path.split("/").pop(),
      size: f.size,
      isdir: 0,
      md5: "not-the-real-md5",
      server_mtime: f.mtime,
      local_mtime: f.mtime,
    };
  }

  #list(q: URLSearchParams): Response {
    const dir = (q.get("dir") ?? "/").replace(/\/+$/, "");
    const start = Number(q.get("start") ?? 0);
    const limit = Math.min(1000, Number(q.get("limit") ?? 1000));
    const entries = [...this.files.values()].filter((f) =>
      f.path.slice(0, f.path.lastIndexOf("/")) === dir
    );
    if (entries.length === 0) return json({ errno: -9, errmsg: "not found" });
    const page = entries.slice(start, start + limit).map((f) => this.#entry(f));
    return json({ errno: 0, list: page, request_id: this.#seq++ });
  }

  #filemetas(q: URLSearchParams): Response {
    const raw = q.get("fsids") ?? "[]";
    if (!/^\[(\d+(,\d+)*)?\]$/.test(raw)) {
      return json({ errno: 2, errmsg: "param error" });
    }
    const ids = raw.slice(1, -1).split(",").filter(Boolean).map((s) =>
      BigInt(s)
    );
    const list = [...this.files.values()].filter((f) => ids.includes(f.fsId))
      .map((f) => ({
        ...this.#entry(f),
        filename: f.path.split("/").pop(),
        ...(q.get("dlink") === "1"
          ? {
            dlink:
              `${this.url}/dl/${f.fsId}?fid=${f.fsId}&sign=SIGNED-SECRET&expires=8h`,
          }
          : {}),
      }));
    return json({ errno: 0, list, request_id: this.#seq++ });
  }

  #delete(form: URLSearchParams): Response {
    if (form.get("async") === null) {
      return json({ errno: 2, errmsg: "param error" });
    }
    const paths = JSON.parse(form.get("filelist") ?? "[]") as string[];
    const info = paths.map((path) => {
      const had = this.files.delete(path);
      return { errno: had ? 0 : -9, path };
    });
    const anyFailed = info.some((i) => i.errno !== 0);
    return json({ errno: anyFailed ? 12 : 0, info, request_id: this.#seq++ });
  }

  #dlink(req: Request, p: string): Response {
    this.userAgents.push(req.headers.get("user-agent") ?? "");
    if (req.headers.get("user-agent") !== "pan.baidu.com") {
      return json({ error_code: 31326, error_msg: "anti hotlinking" }, 403);
    }
    const id = p.slice("/dl/".length);
    const f = [...this.files.values()].find((x) => String(x.fsId) === id);
    if (!f) {
      return json({ error_code: 31066, error_msg: "file does not exist" }, 404);
    }
    return new Response(null, {
      status: 302,
      headers: { location: `/cdn/${id}?sig=CDN-SIGNATURE` },
    });
  }

  #cdn(req: Request, fault?: Fault): Response {
    if (req.headers.get("user-agent") !== "pan.baidu.com") {
      return json({ error_code: 31326, error_msg: "anti hotlinking" }, 403);
    }
    const id = new URL(req.url).pathname.slice("/cdn/".length);
    const f = [...this.files.values()].find((x) => String(x.fsId) === id);
    if (!f || !f.bytes) return new Response("not found", { status: 404 });
    let start = 0;
    if (req.headers.get("range")) this.ranges.push(req.headers.get("range")!);
    const range = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
    if (range) start = Number(range[1]);
    let body = f.bytes.subarray(start);
    if (fault?.corrupt && body.length > 0) {
      body = body.slice();
      body[0] ^= 0xff;
    }
    const headers: Record<string, string> = {
      "content-length": String(body.length),
      "content-type": "application/octet-stream",
    };
    if (range) {
      headers["content-range"] = `bytes ${start}-${f.size - 1}/${f.size}`;
    }
    const status = range ? 206 : 200;
    if (fault?.dropAfter !== undefined) {
      // The first bytes go out (and get time to reach the client) before
      // the connection breaks; erroring at once would lose them unsent.
      const cut = body.subarray(0, fault.dropAfter);
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (!sent) {
            sent = true;
            c.enqueue(cut.slice());
            return;
          }
          await new Promise((r) => setTimeout(r, 100));
          c.error(new Error("connection dropped by the fake"));
        },
      }, { highWaterMark: 0 });
      return new Response(stream, { status, headers });
    }
    return new Response(body.slice(), { status, headers });
  }
}

function join(pieces: Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0];
  let n = 0;
  for (const p of pieces) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of pieces) {
    out.set(p, n);
    n += p.length;
  }
  pieces.splice(0, pieces.length, out);
  return out;
}

function indexOfCrlf2(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

async function writeAllConn(conn: Deno.Conn, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function dropped(): Response {
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"md5":"'));
      c.error(new Error("connection dropped by the fake"));
    },
  });
  return new Response(stream, {
    status: 200,
    headers: { "content-length": "64" },
  });
}

function json(
  value: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  const text = JSON.stringify(
    value,
    (_k, v) => typeof v === "bigint" ? `__BIG__${v}` : v,
  )
    .replace(/"__BIG__(\d+)"/g, "$1");
  return new Response(text, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

function splitMd5(bytes: Uint8Array, chunk: number): string[] {
  const out: string[] = [];
  for (let off = 0; off < bytes.length || out.length === 0; off += chunk) {
    out.push(md5(bytes.subarray(off, off + chunk)));
  }
  return out;
}
