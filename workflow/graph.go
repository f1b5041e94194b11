package workflow

import "strings"

// Ancestors returns every step id the step transitively needs: the steps
// whose outputs and answers its templates may read. It is empty for an
// unknown id, and names only steps that exist.
func (w *Workflow) Ancestors(id string) map[string]bool {
	idx := w.index()
	i, ok := idx[id]
	if !ok {
		return map[string]bool{}
	}
	return w.ancestorsOf(i, idx)
}

// index maps each id to its first step; a duplicate is a validation error,
// and the first one is what Step returns too.
func (w *Workflow) index() map[string]int {
	idx := make(map[string]int, len(w.Steps))
	for i, s := range w.Steps {
		if _, dup := idx[s.ID]; !dup {
			idx[s.ID] = i
		}
	}
	return idx
}

func (w *Workflow) ancestorsOf(i int, idx map[string]int) map[string]bool {
	out := map[string]bool{}
	stack := []int{i}
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, n := range w.Steps[j].Needs {
			k, ok := idx[n]
			if !ok || out[n] {
				continue
			}
			out[n] = true
			stack = append(stack, k)
		}
	}
	return out
}

// cycles returns one cycle per strongly connected component of the needs
// graph, each as step indexes from the first step in file order back to it.
// A step needing itself is left out: it gets its own, clearer message.
func (w *Workflow) cycles(idx map[string]int) [][]int {
	t := &tarjan{w: w, idx: idx, num: make([]int, len(w.Steps)), low: make([]int, len(w.Steps)), on: make([]bool, len(w.Steps))}
	for i := range w.Steps {
		if t.num[i] == 0 {
			t.visit(i)
		}
	}
	var out [][]int
	for _, scc := range t.sccs {
		if len(scc) > 1 {
			out = append(out, w.cycleIn(scc, idx))
		}
	}
	return out
}

// edges lists the steps i needs, once each, without itself or unknown ids.
func (w *Workflow) edges(i int, idx map[string]int) []int {
	var out []int
	seen := map[int]bool{}
	for _, n := range w.Steps[i].Needs {
		if k, ok := idx[n]; ok && k != i && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// tarjan finds strongly connected components (Tarjan's algorithm).
type tarjan struct {
	w        *Workflow
	idx      map[string]int
	counter  int
	num, low []int
	on       []bool
	stack    []int
	sccs     [][]int
}

func (t *tarjan) visit(i int) {
	t.counter++
	t.num[i], t.low[i] = t.counter, t.counter
	t.stack = append(t.stack, i)
	t.on[i] = true
	for _, k := range t.w.edges(i, t.idx) {
		if t.num[k] == 0 {
			t.visit(k)
			t.low[i] = min(t.low[i], t.low[k])
		} else if t.on[k] {
			t.low[i] = min(t.low[i], t.num[k])
		}
	}
	if t.low[i] != t.num[i] {
		return
	}
	var scc []int
	for {
		k := t.stack[len(t.stack)-1]
		t.stack = t.stack[:len(t.stack)-1]
		t.on[k] = false
		scc = append(scc, k)
		if k == i {
			break
		}
	}
	t.sccs = append(t.sccs, scc)
}

// cycleIn finds a shortest cycle through the component's first step, by a
// breadth-first search that stays inside the component.
func (w *Workflow) cycleIn(scc []int, idx map[string]int) []int {
	in := map[int]bool{}
	start := scc[0]
	for _, k := range scc {
		in[k] = true
		start = min(start, k)
	}
	parent := map[int]int{start: -1}
	queue := []int{start}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, k := range w.edges(u, idx) {
			if k == start {
				path := []int{start}
				for n := u; n != start; n = parent[n] {
					path = append(path, n)
				}
				// path is start, u, ..., start's child; put it in needs order.
				for a, b := 1, len(path)-1; a < b; a, b = a+1, b-1 {
					path[a], path[b] = path[b], path[a]
				}
				return append(path, start)
			}
			if _, seen := parent[k]; !seen && in[k] {
				parent[k] = u
				queue = append(queue, k)
			}
		}
	}
	return []int{start, start} // unreachable for a real component
}

// cycleString renders a cycle as `a -> b -> c -> a`.
func (w *Workflow) cycleString(path []int) string {
	names := make([]string, len(path))
	for k, i := range path {
		names[k] = w.Steps[i].ID
	}
	return strings.Join(names, " -> ")
}
