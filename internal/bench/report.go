package bench

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// renderTable formats the results as plain-text tables, with the issue's
// targets marked met or missed where a figure has one.
func renderTable(res *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %d CPUs (%s), %.0f GB, %s, load average at start %s\n\n",
		res.Machine.CPUs, res.Machine.CPUModel, res.Machine.MemoryGB, res.Machine.GoVersion, res.Machine.LoadAvg)
	if dp := res.DataPlane; dp != nil {
		b.WriteString(dataPlaneTables(dp))
	}
	if len(res.Compiler) > 0 {
		b.WriteString(compilerTable(res.Compiler))
	}
	if len(res.ControlPlane) > 0 {
		b.WriteString(controlPlaneTable(res.ControlPlane))
	}
	for _, e := range res.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	return b.String()
}

// mark returns "met" or "MISSED".
func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func newTab(b *strings.Builder) *tabwriter.Writer {
	return tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
}

func dataPlaneTables(dp *DataPlaneResult) string {
	var b strings.Builder
	b.WriteString("Data plane, saturation (wrk/h2load: 1 thread, 16 connections, 1 KiB responses)\n")
	w := newTab(&b)
	fmt.Fprintln(w, "target\tproto\trps\tvs HAProxy\tp50 ms\tp90 ms\tp99 ms\tproxy CPU us/req\terrors\t")
	for _, s := range dp.Saturation {
		ratio := "-"
		if h := dp.find("haproxy", s.Proto); h != nil && h.RPS > 0 {
			ratio = fmt.Sprintf("%.2f", s.RPS/h.RPS)
		}
		cpu := "-"
		if s.CPUUSPerReq > 0 {
			cpu = fmt.Sprintf("%.1f", s.CPUUSPerReq)
		}
		fmt.Fprintf(w, "%s\t%s\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%s\t%d\t\n", s.Target, s.Proto, s.RPS, ratio, s.P50MS, s.P90MS, s.P99MS, cpu, s.Errors)
	}
	w.Flush()
	fmt.Fprintf(&b, "\nData plane, open loop at %d rps (latency from the scheduled send time)\n", dp.FixedRate)
	w = newTab(&b)
	fmt.Fprintln(w, "target\tproto\tachieved rps\tp50 ms\tp99 ms\tadded p50 ms\tadded p99 ms\tvCPU\tRSS MB\tanon MB\tprocs\terrors\t")
	for _, f := range dp.Fixed {
		fmt.Fprintf(w, "%s\t%s\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%d\t%d\t\n",
			f.Target, f.Proto, f.RPS, f.P50MS, f.P99MS, f.AddedP50MS, f.AddedP99MS, f.VCPU, f.RSSMB, f.AnonMB, f.Procs, f.Errors)
	}
	w.Flush()
	b.WriteString("\nData plane targets\n")
	w = newTab(&b)
	fmt.Fprintln(w, "target\tmeasured\tgoal\t\t")
	if s, h := dp.find("sidecar", "http1"), dp.find("haproxy", "http1"); s != nil && h != nil && h.RPS > 0 {
		r := s.RPS / h.RPS
		fmt.Fprintf(w, "one sidecar max rps / HAProxy\t%.2f\t>= 0.70\t%s\t\n", r, mark(r >= 0.70))
	}
	if s := dp.find("sidecar", "http1"); s != nil && s.CPUUSPerReq > 0 {
		fmt.Fprintf(w, "sidecar CPU per request at saturation\t%.1f us\t<= 25 us\t%s\t\n", s.CPUUSPerReq, mark(s.CPUUSPerReq <= 25))
	}
	if h := dp.find("haproxy", "http1"); h != nil && h.CPUUSPerReq > 0 {
		fmt.Fprintf(w, "(HAProxy CPU per request, for reference)\t%.1f us\t\t\t\n", h.CPUUSPerReq)
	}
	for _, f := range dp.Fixed {
		if f.Target == "sidecar" || f.Target == "two sidecars" || f.Target == "two sidecars mTLS" {
			hops := 1.0
			if f.Target != "sidecar" {
				hops = 2
			}
			per := f.AddedP99MS / hops
			fmt.Fprintf(w, "added p99 per hop, %s %s\t%.3f ms\t< 1 ms\t%s\t\n", f.Target, f.Proto, per, mark(per < 1))
		}
		if f.Target == "sidecar" && f.RPS > 0 {
			scale := 1000 / f.RPS
			fmt.Fprintf(w, "sidecar vCPU per 1,000 rps (%s)\t%.3f\t< 0.10\t%s\t\n", f.Proto, f.VCPU*scale, mark(f.VCPU*scale < 0.10))
			fmt.Fprintf(w, "sidecar RSS at 1,000 rps (%s)\t%.1f MB\t< 40 MB\t%s\t\n", f.Proto, f.RSSMB, mark(f.RSSMB < 40))
		}
	}
	if p, m := dp.find("two sidecars", "http1"), dp.find("two sidecars mTLS", "http1"); p != nil && m != nil && p.RPS > 0 {
		cost := 1 - m.RPS/p.RPS
		fmt.Fprintf(w, "mTLS cost, two sidecars max rps\t%.0f%%\t< 20%%\t%s\t\n", cost*100, mark(cost < 0.20))
	}
	w.Flush()
	b.WriteString("\n")
	return b.String()
}

func compilerTable(cs []CompilerResult) string {
	var b strings.Builder
	b.WriteString("Compiler (one sidecar class; each service: VirtualService 3 routes, DestinationRule 2 subsets, 3 endpoints)\n")
	w := newTab(&b)
	fmt.Fprintln(w, "services\tobjects\tparse ms\tcompile ms\tfull ms\talloc MB\tpeak heap MB\trecompile 1 VS ms\tcache MB\ttargets\t")
	for _, c := range cs {
		t := ""
		if c.Services == 10000 {
			t = fmt.Sprintf("full < 2 s %s; recompile < 20 ms %s", mark(c.FullMS < 2000), mark(c.RecompileMS < 20))
		}
		fmt.Fprintf(w, "%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.0f\t%s\t\n", c.Services, c.Objects, c.ParseMS, c.CompileMS, c.FullMS, c.AllocMB, c.PeakHeapMB, c.RecompileMS, c.CacheMB, t)
	}
	w.Flush()
	b.WriteString("\n")
	return b.String()
}

func controlPlaneTable(cs []CPResult) string {
	var b strings.Builder
	b.WriteString("Control plane (one proxy class; commit seen = the controller's \"new revision\" log line; poll 100 ms)\n")
	w := newTab(&b)
	fmt.Fprintln(w, "services\tproxies\tmode\tconnect ms\tready\tRSS MB\tKB/proxy\tchange\tp50 ms\tp99 ms\tmax ms\tacked\tCPU ms\tKB sent\terror\t")
	for _, c := range cs {
		if len(c.Changes) == 0 {
			fmt.Fprintf(w, "%d\t%d\t%s\t%.0f\t%d\t%.0f\t%.1f\t-\t\t\t\t\t\t\t%s\t\n", c.Services, c.Proxies, c.Mode(), c.ConnectMS, c.Ready, c.RSSAfterMB, c.RSSPerProxyKB, short(c.Error))
			continue
		}
		for i, ch := range c.Changes {
			if i == 0 {
				fmt.Fprintf(w, "%d\t%d\t%s\t%.0f\t%d\t%.0f\t%.1f\t", c.Services, c.Proxies, c.Mode(), c.ConnectMS, c.Ready, c.RSSAfterMB, c.RSSPerProxyKB)
			} else {
				fmt.Fprint(w, "\t\t\t\t\t\t\t")
			}
			fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%d\t%.0f\t%d\t%s\t\n", ch.Kind, ch.P50MS, ch.P99MS, ch.MaxMS, ch.Acked, ch.CPUMS, ch.Bytes/1024, short(c.Error))
		}
	}
	w.Flush()
	b.WriteString("\nControl plane targets\n")
	w = newTab(&b)
	fmt.Fprintln(w, "target\tmeasured\tgoal\t\t")
	find := func(s, n int, delta bool) *CPResult {
		for i := range cs {
			if cs[i].Services == s && cs[i].Proxies == n && cs[i].Delta == delta && cs[i].Error == "" {
				return &cs[i]
			}
		}
		return nil
	}
	if c := find(1000, 1000, false); c != nil {
		fmt.Fprintf(w, "1,000 services x 1,000 proxies connected\t%.0f ms\t< 2,000 ms\t%s\t\n", c.ConnectMS, mark(c.ConnectMS < 2000 && !c.ConnectTimeout))
		fmt.Fprintf(w, "1,000 x 1,000 controller RSS\t%.0f MB\t< 300 MB\t%s\t\n", c.RSSAfterMB, mark(c.RSSAfterMB < 300))
		if len(c.Changes) > 0 {
			fmt.Fprintf(w, "1,000 x 1,000 one-route change, last ACK\t%.0f ms\t< 300 ms\t%s\t\n", c.Changes[0].MaxMS, mark(c.Changes[0].MaxMS < 300 && !c.Changes[0].Timeout))
		}
	}
	if c := find(3, 5000, false); c != nil && len(c.Changes) > 0 {
		fmt.Fprintf(w, "5,000 proxies (3 services) one-route change, last ACK\t%.0f ms\t< 500 ms\t%s\t\n", c.Changes[0].MaxMS, mark(c.Changes[0].MaxMS < 500 && !c.Changes[0].Timeout))
	}
	var worst float64
	for _, c := range cs {
		if c.Error == "" && c.Proxies >= 1000 && c.RSSPerProxyKB > worst {
			worst = c.RSSPerProxyKB
		}
	}
	if worst > 0 {
		fmt.Fprintf(w, "RSS per connected proxy (worst case, >= 1,000 proxies)\t%.0f KB\t< 50 KB\t%s\t\n", worst, mark(worst < 50))
	}
	if s, d := find(1000, 1000, false), find(1000, 1000, true); s != nil && d != nil && len(s.Changes) > 0 && len(d.Changes) > 0 && d.Changes[0].Bytes > 0 {
		r := float64(s.Changes[0].Bytes) / float64(d.Changes[0].Bytes)
		fmt.Fprintf(w, "SotW / delta bytes, one-route change at 1,000 services\t%.1fx\t>= 10x\t%s\t\n", r, mark(r >= 10))
	}
	w.Flush()
	b.WriteString("\n")
	return b.String()
}

// short cuts an error message for a table cell.
func short(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
