// The sidebar's REST client: the server extension's endpoints (nbmodelhub/server/handlers.py), typed.
// Requests go through Jupyter's ServerConnection, which adds the token and the XSRF header.
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";
import type { DiffData } from "../lib/diff_view";
import type { GraphData } from "../lib/graph_view";
import type { LineageData } from "../lib/lineage_view";
import type { HistogramData } from "../widgets/weight_histograms";
import type { VersionRow } from "../widgets/version_table";

export type { VersionRow };

export interface RepositoryEntry {
  name: string;
  location: string;
  source: "default" | "configured" | "notebook" | "added";
}

export interface ModelSummary {
  name: string;
  versions: number;
  latest: number;
  created: string;
  message: string;
  tags: Record<string, number>;
  running: number;
}

export interface VersionPage {
  total: number;
  offset: number;
  limit: number;
  rows: VersionRow[];
}

export interface FileInfo {
  name: string;
  size: number;
  mtime: number;
  hash: string;
}

export interface VersionMeta {
  ref: string;
  id: string;
  model: string;
  number: number;
  message: string;
  author: string;
  created: string;
  params: Record<string, unknown>;
  metrics: Record<string, unknown>;
  curves: Record<string, [number, number][]>;
  parents: string[];
  snapshots: (number | null)[];
  tensors: number;
  parameters: number;
  bytes: number;
  tags: string[];
  files: FileInfo[];
  framework: string;
  source: string | null;
  evaluations: { metrics: Record<string, unknown>; function?: string; created?: string }[];
}

export interface RunInfo {
  id: string;
  model: string;
  status: string;
  author: string;
  host: string;
  started: string;
  updated: string;
  last_step: number | null;
  points: number;
  metrics: Record<string, unknown>;
}

/** An error the server explained: `message` says what went wrong and what to do next. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class HubClient {
  private settings = ServerConnection.makeSettings();

  constructor(settings?: ServerConnection.ISettings) {
    if (settings) this.settings = settings;
  }

  async request<T>(path: string, params: Record<string, unknown> = {}, init: RequestInit = {}): Promise<T> {
    const query = Object.entries(params)
      .filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join("&");
    const url = URLExt.join(this.settings.baseUrl, "nbmodelhub", path) + (query ? `?${query}` : "");
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (err) {
      throw new ApiError(`cannot reach the Jupyter server: ${(err as Error).message}`, 0);
    }
    const text = await response.text();
    let body: any = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body?.message || `${response.status} ${response.statusText}`;
      if (response.status === 404 && !body?.reason && !body?.status) {
        throw new ApiError("the nbmodelhub server extension is not enabled: run `jupyter server extension enable nbmodelhub.server` and restart Jupyter", 404);
      }
      throw new ApiError(message, response.status);
    }
    return body as T;
  }

  repositories(): Promise<{ repositories: RepositoryEntry[]; read_only: boolean }> {
    return this.request("repositories");
  }
  addRepository(location: string): Promise<RepositoryEntry> {
    return this.request("repositories", {}, { method: "POST", body: JSON.stringify({ location }) });
  }
  models(repo: string): Promise<{ models: ModelSummary[]; state: string }> {
    return this.request("models", { repo });
  }
  state(repo: string): Promise<{ state: string }> {
    return this.request("state", { repo });
  }
  versions(repo: string, opts: { model?: string; q?: string; sort?: string; order?: string; offset: number; limit: number }): Promise<VersionPage> {
    return this.request("versions", { repo, ...opts });
  }
  version(repo: string, ref: string): Promise<VersionMeta> {
    return this.request("version", { repo, ref });
  }
  graph(repo: string, ref: string): Promise<GraphData> {
    return this.request("graph", { repo, ref });
  }
  histograms(repo: string, ref: string): Promise<HistogramData> {
    return this.request("histograms", { repo, ref });
  }
  diff(repo: string, a: string, b: string): Promise<DiffData> {
    return this.request("diff", { repo, a, b });
  }
  lineage(repo: string, model: string): Promise<LineageData> {
    return this.request("lineage", { repo, model });
  }
  runs(repo: string): Promise<{ runs: RunInfo[] }> {
    return this.request("runs", { repo, active: 1 });
  }
  tag(repo: string, ref: string, tag: string, force = false): Promise<VersionMeta> {
    return this.request("tag", {}, { method: "POST", body: JSON.stringify({ repo, ref, tag, force }) });
  }
  remove(repo: string, ref: string): Promise<VersionMeta> {
    return this.request("version", { repo, ref }, { method: "DELETE" });
  }
}

/** The `%dlv` command that shows the same thing in a notebook; `--repo` unless it is the default repository. */
export function dlvCommand(args: string[], repo: RepositoryEntry | null): string {
  const words = [...args];
  if (repo && repo.source !== "default") words.push("--repo", repo.location);
  return "%dlv " + words.map(quote).join(" ");
}

function quote(word: string): string {
  return /^[\w@:.\/=+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'"'"'`)}'`;
}
