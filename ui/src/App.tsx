import { Component, type ErrorInfo, type ReactNode } from 'react';
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
        {/* Keyed by path: going to another page clears a page's error. */}
        <PageErrorBoundary key={path}>
          <Page path={path} />
        </PageErrorBoundary>
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
    const name = decodePathPart(workflow[1]);
    if (name !== undefined) return <WorkflowPage key={name} name={name} />;
  }
  if (path === '/schedules' || path === '/schedules/') return <Schedules />;
  const schedule = /^\/schedules\/([^/]+)\/?$/.exec(path);
  if (schedule?.[1]) {
    const name = decodePathPart(schedule[1]);
    if (name !== undefined) return <SchedulePage key={name} name={name} />;
  }
  const run = /^\/runs\/([^/]+)\/?$/.exec(path);
  if (run?.[1]) {
    const id = decodePathPart(run[1]);
    // key: a different run is a fresh page (fresh stream, fresh layout).
    if (id !== undefined) return <RunPage key={id} id={id} />;
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

/** A percent-decoded path segment; undefined for a malformed escape ("%", "%E0%A4%A"), which no page has. */
function decodePathPart(part: string): string | undefined {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}

/**
 * Catches what a page throws while rendering, so one page's failure shows an
 * error under the navigation instead of blanking the whole app.
 */
class PageErrorBoundary extends Component<{ children: ReactNode }, { error: Error | undefined }> {
  override state: { error: Error | undefined } = { error: undefined };

  static getDerivedStateFromError(error: unknown): { error: Error } {
    return { error: error instanceof Error ? error : new Error(String(error)) };
  }

  override componentDidCatch(error: unknown, info: ErrorInfo): void {
    console.error('page failed', error, info.componentStack);
  }

  override render(): ReactNode {
    if (!this.state.error) return this.props.children;
    return (
      <div className="page" role="alert">
        <h1>Something went wrong</h1>
        <p className="error-box">{this.state.error.message}</p>
        <p>
          <Link to="/">Go to the overview.</Link>
        </p>
      </div>
    );
  }
}
