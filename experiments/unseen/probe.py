import sys, json, math
import numpy as np
from via_otlp.config import Config
from via_otlp.simulate import families as F
from via_otlp.simulate.generate import generate
from via_otlp.simulate.run import replay
from via_otlp.model import EpisodeState, AnomalyKind
from via_otlp.detect import profile as P
seed=int(sys.argv[1]); kw=dict(a.split('=') for a in sys.argv[2:])
case=F.build_case(seed,'day1',**kw)
tr=generate(case.scenario); sc=case.scenario
last={}; null=[]
orig_sz=P.ProfileTable._sibling_z
def sz(self, rel, sdr, judged, ok, weight=None, model_error=0.0, gate=None):
    out=orig_sz(self, rel, sdr, judged, ok, weight, model_error, gate)
    if model_error>0:
        last['j']=dict(rel=rel.copy(), sdr=sdr.copy(), z=out[0].copy(), enough=out[1].copy(), mo=out[2].copy())
    return out
P.ProfileTable._sibling_z=sz
orig_close=P.ProfileTable.close
def close(self, bucket, counts, distinct, partial=False, with_id=None):
    last.clear()
    v=orig_close(self,bucket,counts,distinct,partial,with_id)
    h=(bucket*10e9-0)/3.6e12
    j=last.get('j')
    if j is not None:
        e=j['enough']
        # log-scale version
        lz=np.where(e,(np.log1p(np.maximum(j['rel'],-0.99))-np.log1p(np.maximum(j['mo'],-0.99)))/(j['sdr']/np.maximum(1+j['mo'],0.01)),0)
        null.append((bucket, np.nonzero(e)[0], j['z'][e], lz[e], j['rel'][e], j['sdr'][e]))
    for a in v.alarms:
        if a.kind is AnomalyKind.DRIFT:
            s=a.slot
            if j is not None and j['enough'][s]:
                print(f"DRIFT b{bucket} slot {s} sib z {j['z'][s]:.2f} rel {j['rel'][s]:.3f} mo {j['mo'][s]:.3f} sdr {j['sdr'][s]:.3f} mu {a.expected:.2f} c {a.observed:.0f}")
            else:
                print(f"DRIFT b{bucket} slot {s} lone-cusum mu {a.expected:.2f}")
    return v
P.ProfileTable.close=close
end=sc.start_ns+sc.buckets*sc.bucket_ns
events,rh,_=replay(F.merged_requests([tr]),Config(),end,tr.total_records,None)
for e in events:
    if e.state is EpisodeState.OPEN and e.kind is AnomalyKind.DRIFT:
        h=(e.started_ns-sc.start_ns)/3.6e12
        print(f"{h:6.2f} b{(e.started_ns-sc.start_ns)//10**10} {e.kind.value:8s} {e.source.key[7:20]:14s} {e.template[:40]:40s} | {e.explanation[-60:]}")
z=np.concatenate([n[2] for n in null]); lz=np.concatenate([n[3] for n in null])
print("sib z: n", len(z), "sd %.3f"%z.std(), " P>4 %.2e P<-4 %.2e P>4.75 %.2e"%((z>4).mean(),(z<-4).mean(),(z>4.75).mean()))
print("log z: sd %.3f"%lz.std(), " P>4 %.2e P<-4 %.2e P>4.75 %.2e"%((lz>4).mean(),(lz<-4).mean(),(lz>4.75).mean()))
import pickle; pickle.dump(null, open(f'/tmp/unseen-null-{seed}-{"-".join(sys.argv[2:])}.pkl','wb'))
# spike alarms vs the true rate (business probe)
from via_otlp.simulate.generate import seasonal_factor
season=seasonal_factor(sc, sc.buckets)
def code_of(tmpl):
    pre=tmpl.split('<*>')[0]
    for g in tr.templates:
        if g.spec.text.startswith(pre) and pre: return g
for e in events:
    if e.state is EpisodeState.OPEN and e.kind in (AnomalyKind.SPIKE, AnomalyKind.DRIFT):
        b=(e.started_ns-sc.start_ns)//10**10
        g=code_of(e.template)
        if g is None: continue
        true=tr.rates[g.code,b]
        print(f"{b/360:6.2f} {e.kind.value:6s} {e.template[:30]:30s} forecast/bucket {e.expected:.2f} true rate {true:.2f} (x{true/max(e.expected,1e-9):.2f}); season now {season[b]:.2f}, 15 min ago {season[b-90]:.2f}, 30 min ago {season[b-180]:.2f}")
