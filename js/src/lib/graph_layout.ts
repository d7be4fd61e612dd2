// What part of a layer graph is visible (collapsed groups fold into one node) and where it goes:
// a layered top-to-bottom layout by dagre, of the visible nodes only, cached per set of collapsed
// groups, so a 2,000-layer model lays out its few dozen blocks and re-expanding a block is instant.
import dagre from "@dagrejs/dagre";

export interface GraphNode {
  id: string;
  type: string;
  kind: string;
  group: string;
  family: string;
  attrs: Record<string, unknown>;
  /** [state-dict name, shape, dtype, element count, tied-to name?] */
  params: [string, number[], string, number, string?][];
  module_type?: string;
  out?: unknown[];
}

export interface GroupInfo {
  type: string;
  parent: string | null;
  layers: number;
  parameters: number;
}

export interface LayerStats {
  count?: number;
  mean?: number | null;
  std?: number | null;
  min?: number | null;
  max?: number | null;
  sparsity?: number;
  l2?: number;
  tensors?: Record<string, Record<string, unknown>>;
}

export interface GraphData {
  title?: string;
  summary?: { source?: string; traced?: boolean; layers?: number; edges?: number; parameters?: number };
  nodes: GraphNode[];
  edges: [number, number][];
  groups: Record<string, GroupInfo>;
  collapsed?: string[];
  stats?: Record<string, LayerStats>;
  histograms?: Record<string, { edges: number[]; counts: number[] }>;
}

/** A visible item: a layer, or a collapsed group standing for its members. Keys are prefixed
 * ("n:" layer, "g:" group) because a module may be both a layer and a group of layers. */
export interface VisibleNode {
  key: string;
  id: string;
  isGroup: boolean;
  node?: GraphNode;
  members: number[];
  frame?: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Frame {
  path: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Layout {
  nodes: VisibleNode[];
  byKey: Map<string, VisibleNode>;
  edges: { from: string; to: string; points: { x: number; y: number }[] }[];
  frames: Frame[];
  width: number;
  height: number;
  ms: number;
}

/** Past this many visible nodes, expanded groups are not drawn as frames: dagre's compound layout
 * costs several times the flat one, and at that size the frames stop helping the eye anyway. */
const MAX_FRAMED = 150;

export function groupKey(path: string): string {
  return `g:${path}`;
}
export function nodeKey(id: string): string {
  return `n:${id}`;
}

/** Ancestor groups of a group path, outermost first ("a.b.c" → ["a", "a.b", "a.b.c"]). */
export function ancestors(group: string): string[] {
  if (!group) return [];
  const parts = group.split(".");
  return parts.map((_, i) => parts.slice(0, i + 1).join("."));
}

export class GraphModel {
  readonly data: GraphData;
  readonly chains: string[][];
  readonly index: Map<string, number>;
  private cache = new Map<string, Layout>();

  constructor(data: GraphData) {
    this.data = data;
    // Only groups the data knows become collapsible: a path part that is no module stays flat.
    this.chains = data.nodes.map((n) => ancestors(n.group).filter((g) => g in data.groups));
    this.index = new Map(data.nodes.map((n, i) => [n.id, i]));
  }

  /** The visible key of layer i: its outermost collapsed group, else itself. */
  owner(i: number, collapsed: Set<string>): string {
    for (const g of this.chains[i]) if (collapsed.has(g)) return groupKey(g);
    return nodeKey(this.data.nodes[i].id);
  }

  /** Groups that hide layer i now (to expand so that it shows). */
  hiding(i: number, collapsed: Set<string>): string[] {
    return this.chains[i].filter((g) => collapsed.has(g));
  }

  layout(collapsed: Set<string>, measure: (v: VisibleNode) => [number, number]): Layout {
    const cacheKey = [...collapsed].sort().join("\u0000");
    const hit = this.cache.get(cacheKey);
    if (hit) return hit;
    const t0 = performance.now();
    const { nodes } = this.data;
    const byKey = new Map<string, VisibleNode>();
    const ownerOf: string[] = new Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const key = this.owner(i, collapsed);
      ownerOf[i] = key;
      let v = byKey.get(key);
      if (!v) {
        const isGroup = key.startsWith("g:");
        v = { key, id: key.slice(2), isGroup, node: isGroup ? undefined : nodes[i], members: [], x: 0, y: 0, width: 0, height: 0 };
        byKey.set(key, v);
      }
      v.members.push(i);
    }
    const visible = [...byKey.values()];
    const framed = visible.length <= MAX_FRAMED;
    // A visible item sits in the frame of its innermost expanded ancestor group.
    const frames = new Set<string>();
    if (framed) {
      for (const v of visible) {
        const chain = this.chains[v.members[0]];
        const upTo = v.isGroup ? chain.indexOf(v.id) : chain.length;
        if (upTo > 0) {
          v.frame = chain[upTo - 1];
          for (const g of chain.slice(0, upTo)) frames.add(g);
        }
      }
    }
    const g = new dagre.graphlib.Graph({ compound: framed && frames.size > 0, multigraph: false });
    g.setGraph({
      rankdir: "TB",
      nodesep: 18,
      ranksep: 34,
      edgesep: 8,
      marginx: 16,
      marginy: 16,
      // network-simplex places best; tight-tree is several times faster on big views
      ranker: visible.length > 120 ? "tight-tree" : "network-simplex",
    });
    g.setDefaultEdgeLabel(() => ({}));
    for (const v of visible) {
      [v.width, v.height] = measure(v);
      g.setNode(v.key, { width: v.width, height: v.height });
    }
    if (framed && frames.size > 0) {
      for (const f of frames) {
        g.setNode(`f:${f}`, { width: 0, height: 0, paddingTop: 18 } as never);
        const parent = this.data.groups[f]?.parent;
        if (parent && frames.has(parent)) g.setParent(`f:${f}`, `f:${parent}`);
      }
      for (const v of visible) if (v.frame) g.setParent(v.key, `f:${v.frame}`);
    }
    const seen = new Set<string>();
    const edges: [string, string][] = [];
    for (const [a, b] of this.data.edges) {
      const u = ownerOf[a];
      const w = ownerOf[b];
      if (u === undefined || w === undefined || u === w) continue;
      const k = `${u}\u0000${w}`;
      if (seen.has(k)) continue;
      seen.add(k);
      edges.push([u, w]);
      g.setEdge(u, w);
    }
    dagre.layout(g);
    for (const v of visible) {
      const n = g.node(v.key);
      v.x = n.x ?? 0;
      v.y = n.y ?? 0;
    }
    const frameList: Frame[] = [];
    if (framed) {
      for (const f of frames) {
        const n = g.node(`f:${f}`);
        if (n && n.width > 0) frameList.push({ path: f, x: n.x ?? 0, y: n.y ?? 0, width: n.width, height: n.height });
      }
      frameList.sort((a, b) => a.path.split(".").length - b.path.split(".").length);
    }
    const graph = g.graph();
    const layout: Layout = {
      nodes: visible,
      byKey,
      edges: edges.map(([from, to]) => ({ from, to, points: g.edge(from, to)?.points ?? [] })),
      frames: frameList,
      width: graph.width ?? 0,
      height: graph.height ?? 0,
      ms: performance.now() - t0,
    };
    if (this.cache.size > 32) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(cacheKey, layout);
    return layout;
  }
}
