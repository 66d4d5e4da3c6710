import { createRouter, createWebHistory } from 'vue-router'
import RunsPage from './pages/RunsPage.vue'

export const router = createRouter({
  history: createWebHistory('/_audit/ui/'),
  routes: [
    { path: '/', name: 'runs', component: RunsPage },
    { path: '/runs/:id', name: 'run', component: () => import('./pages/RunPage.vue') },
    { path: '/compare', name: 'compare', component: () => import('./pages/ComparePage.vue') },
    { path: '/performance', name: 'performance', component: () => import('./pages/PerformancePage.vue') },
    { path: '/usage', name: 'usage', component: () => import('./pages/UsagePage.vue') },
    { path: '/trace', name: 'trace', component: () => import('./pages/TracePage.vue') },
    { path: '/integrity', name: 'integrity', component: () => import('./pages/IntegrityPage.vue') },
    { path: '/people', name: 'people', component: () => import('./pages/PeoplePage.vue') },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})
