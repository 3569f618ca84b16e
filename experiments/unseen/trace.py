import sys, json
from via_otlp.config import Config
from via_otlp.simulate import families as F
from via_otlp.simulate.generate import generate
from via_otlp.simulate.run import replay
from via_otlp.model import EpisodeState
seed=int(sys.argv[1]); kw=dict(a.split('=') for a in sys.argv[2:])
case=F.build_case(seed,'day1',**kw)
tr=generate(case.scenario)
sc=case.scenario
end=sc.start_ns+sc.buckets*sc.bucket_ns
events,rh,_=replay(F.merged_requests([tr]),Config(),end,tr.total_records,None)
for e in events:
    if e.state is EpisodeState.OPEN:
        h=(e.started_ns-sc.start_ns)/3.6e12
        print(f"{h:6.2f} {e.kind.value:8s} {e.source.key[7:20]:14s} {e.template[:40]:40s} exp {e.expected:.2f} obs {e.observed:.2f} base {e.baseline_mean:.2f}±{e.baseline_std:.2f} | {e.explanation}")
