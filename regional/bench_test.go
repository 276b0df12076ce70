package regional_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tallyvote/tally/regional"
)

// BenchmarkIntakeSync measures the HTTP intake's throughput with the store
// fsynced before each acknowledgement (nats.sync: always, the default) and
// with the server's default background sync (every 2 minutes), two nodes
// side by side in the same run, each iteration posting to one then the
// other. Each iteration is `clients` concurrent requests of `batch` reports
// to each node. It reports both rates in reports/s and their ratio.
//
//	go test -run '^$' -bench IntakeSync -benchtime 20x ./regional/
func BenchmarkIntakeSync(b *testing.B) {
	for _, mode := range []struct {
		name           string
		batch, clients int
	}{{"Batch100x4", 100, 4}, {"Single1x8", 1, 8}} {
		b.Run(mode.name, func(b *testing.B) {
			nodes := []*regional.Node{
				MustOpenNode(b, func(c *regional.Config) { c.NATS.Sync = regional.SyncAlways }),
				MustOpenNode(b, func(c *regional.Config) { c.NATS.Sync = 2 * time.Minute }),
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: mode.clients}}
			var took [2]time.Duration
			reports := 0
			round := 0
			post := func(n *regional.Node) time.Duration {
				start := time.Now()
				var wg sync.WaitGroup
				for c := range mode.clients {
					var batch []json.RawMessage
					for j := range mode.batch {
						cell := cells[(c+j)%len(cells)]
						batch = append(batch, reportJSON(fmt.Sprintf("north-%d-%d-%d", round, c, j), cell.p, cell.c, j))
					}
					body, _ := json.Marshal(batch)
					wg.Add(1)
					go func() {
						defer wg.Done()
						res, err := client.Post("http://"+n.HTTPAddr()+"/api/v1/reports", "application/json", bytes.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						defer res.Body.Close()
						if res.StatusCode != http.StatusOK {
							b.Errorf("status %d", res.StatusCode)
						}
					}()
				}
				wg.Wait()
				return time.Since(start)
			}
			for b.Loop() {
				round++
				for i, n := range nodes {
					took[i] += post(n)
				}
				reports += mode.batch * mode.clients
			}
			always := float64(reports) / took[0].Seconds()
			interval := float64(reports) / took[1].Seconds()
			b.ReportMetric(always, "always_reports/s")
			b.ReportMetric(interval, "interval_reports/s")
			b.ReportMetric(always/interval, "ratio")
			b.ReportMetric(0, "ns/op") // two nodes per op: the rates above are the figures
		})
	}
}
