package ldapsync

import "slices"

// graph is the fetched group graph: direct user members (indexes into the
// run's user table) and direct child groups (indexes into the group list).
type graph struct {
	users    [][]int32
	children [][]int
}

// resolve computes every group's effective (transitive) user members from
// the local graph, without any server round trip. Cycles are allowed: the
// groups of a strongly connected component share one member set. It also
// returns the cycles found (components of more than one group, or a group
// that contains itself), each sorted, and each group's component (edges
// inside one component are the ones that close a cycle).
func (g graph) resolve() (eff [][]int32, cycles [][]int, comp []int) {
	n := len(g.users)
	comp, comps := g.scc()
	// Tarjan emits components in reverse topological order (children
	// first), so one pass in emission order sees every child component done.
	compEff := make([][]int32, len(comps))
	for ci, members := range comps {
		var set []int32
		self := false
		for _, v := range members {
			set = append(set, g.users[v]...)
			for _, c := range g.children[v] {
				cc := comp[c]
				if cc == ci {
					self = true
					continue
				}
				set = append(set, compEff[cc]...)
			}
		}
		slices.Sort(set)
		compEff[ci] = slices.Compact(set)
		if len(members) > 1 || self {
			cyc := append([]int(nil), members...)
			slices.Sort(cyc)
			cycles = append(cycles, cyc)
		}
	}
	eff = make([][]int32, n)
	for v := 0; v < n; v++ {
		eff[v] = compEff[comp[v]]
	}
	slices.SortFunc(cycles, func(a, b []int) int { return a[0] - b[0] })
	return eff, cycles, comp
}

// scc is Tarjan's algorithm, iterative (deep nesting must not overflow the
// stack). comp maps a node to its component; comps lists components in the
// order found (reverse topological).
func (g graph) scc() (comp []int, comps [][]int) {
	n := len(g.users)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	comp = make([]int, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	next := 0
	type frame struct{ v, ci int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.ci < len(g.children[v]) {
				w := g.children[v][f.ci]
				f.ci++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] && index[w] < low[v] {
					low[v] = index[w]
				}
				continue
			}
			if low[v] == index[v] {
				var c []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = len(comps)
					c = append(c, w)
					if w == v {
						break
					}
				}
				comps = append(comps, c)
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				if low[v] < low[p] {
					low[p] = low[v]
				}
			}
		}
	}
	return comp, comps
}
