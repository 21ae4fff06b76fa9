import { TokenField } from './components/TokenField.js';
import { Overview } from './pages/Overview.js';
import { RunPage } from './pages/RunPage.js';
import { RunsList } from './pages/RunsList.js';
import { StartRun } from './pages/StartRun.js';
import { WorkflowPage } from './pages/WorkflowPage.js';
import { SchedulePage, Schedules } from './pages/Schedules.js';
import { Workflows } from './pages/Workflows.js';
import { Link, useLocation } from './router.js';

/** The shell: top bar with navigation and the token field, then the page for the path. */
export function App() {
  const { path } = useLocation();
  return (
    <div className="app">
      <header className="topbar">
        <Link to="/" className="brand">
          <img src="/favicon.svg" alt="" width={22} height={22} />
          Adagio
        </Link>
        <nav className="nav">
          <Link to="/" className={path === '/' ? 'active' : ''}>
            Overview
          </Link>
          <Link to="/runs" className={path.startsWith('/runs') ? 'active' : ''}>
            Runs
          </Link>
          <Link to="/workflows" className={path.startsWith('/workflows') ? 'active' : ''}>
            Workflows
          </Link>
          <Link to="/schedules" className={path.startsWith('/schedules') ? 'active' : ''}>
            Schedules
          </Link>
          <Link to="/start" className={path === '/start' ? 'active' : ''}>
            Start a run
          </Link>
        </nav>
        <TokenField />
      </header>
      <main className="main">
        <Page path={path} />
      </main>
    </div>
  );
}

function Page({ path }: { path: string }) {
  if (path === '/' || path === '/index.html') return <Overview />;
  if (path === '/runs' || path === '/runs/') return <RunsList />;
  if (path === '/start') return <StartRun />;
  if (path === '/workflows' || path === '/workflows/') return <Workflows />;
  const workflow = /^\/workflows\/([^/]+)\/?$/.exec(path);
  if (workflow?.[1]) {
    const name = decodeURIComponent(workflow[1]);
    return <WorkflowPage key={name} name={name} />;
  }
  if (path === '/schedules' || path === '/schedules/') return <Schedules />;
  const schedule = /^\/schedules\/([^/]+)\/?$/.exec(path);
  if (schedule?.[1]) {
    const name = decodeURIComponent(schedule[1]);
    return <SchedulePage key={name} name={name} />;
  }
  const run = /^\/runs\/([^/]+)\/?$/.exec(path);
  if (run?.[1]) {
    const id = decodeURIComponent(run[1]);
    // key: a different run is a fresh page (fresh stream, fresh layout).
    return <RunPage key={id} id={id} />;
  }
  return (
    <div className="page">
      <h1>Not found</h1>
      <p>
        Nothing at <code>{path}</code>. <Link to="/">Go to the overview.</Link>
      </p>
    </div>
  );
}
